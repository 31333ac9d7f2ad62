"""Boot the default rendered service for real and drive every endpoint over HTTP.

One rendered + synced project per module. The stack: Redis (two claimed databases: broker
and results), an SMTP sink, a webhook receiver, the API (uvicorn), Flower and, from the
first test that needs it on, one Celery worker. The API starts before the worker so that
the first test can see a task read `queued`; keep it first in the file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.boot import (
    ServiceProcess,
    SmtpSink,
    SseEvent,
    WebhookReceiver,
    closed_port,
    free_port,
    read_sse,
    redis_databases,
)
from tests.projects import PYTHON_VERSIONS, RenderedProjects
from tests.rendering import RenderedProject, available_python_versions
from tests.services import REDIS_HOST, REDIS_PORT, require_service

# One stack per xdist worker that runs tests of this module: `--dist loadgroup` keeps them on
# one worker, but with pytest 9.2 + xdist 3.8 that grouping silently does nothing
# (pytest-xdist issue 1386); `--dist loadfile` does it. Split over workers, it still passes.
pytestmark = [pytest.mark.boot, pytest.mark.xdist_group("boot-default")]

REPORT_STEPS = 20
REPORT_STEP_DELAY_SECONDS = 0.1  # a report runs 2 s: long enough to be cancelled mid-way
MAX_BODY_BYTES = 1024
FLOWER_USER, FLOWER_PASSWORD = "admin", "secret"
TASK_TIMEOUT = 20.0
# Status polls: routine access-log lines, left out of the API's log tail in failure reports.
STATUS_POLL_LINE = r'"GET /api/task/[^/ ]+ HTTP/1\.1" 200'

FINAL_STATUSES = frozenset({"success", "failure", "revoked"})


def canonical_checksum(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Stack:
    project: RenderedProject
    env: dict[str, str]
    logs: Path
    api: ServiceProcess
    flower: ServiceProcess
    smtp: SmtpSink
    webhooks: WebhookReceiver
    results_redis: redis.Redis
    client: httpx.Client
    webhook_secret: str
    flower_url: str
    worker: ServiceProcess | None = None

    @property
    def package(self) -> str:
        return self.project.package_name

    def diagnostics(self) -> str:
        parts = [self.api.describe("API", 30)]
        if self.worker is not None:
            parts.append(self.worker.describe("worker", 40))
        return "\n".join(parts)

    # -- HTTP helpers ------------------------------------------------------------------

    def expect(self, response: httpx.Response, status: int) -> Any:
        """The JSON body of a response that must have `status`."""
        assert response.status_code == status, (
            f"{response.request.method} {response.request.url} -> {response.status_code}, "
            f"expected {status}: {response.text[:1000]}\n{self.diagnostics()}"
        )
        return response.json()

    def submit(self, path: str, **kwargs: Any) -> str:
        """POST a task; check the 202 body; return the task id."""
        body = self.expect(self.client.post(path, **kwargs), 202)
        assert body["status"] == "queued", body
        assert isinstance(body["message"], str) and body["message"], body
        assert isinstance(body["task_id"], str) and body["task_id"], body
        return str(body["task_id"])

    def wait_for_task(
        self,
        task_id: str,
        until: frozenset[str] = FINAL_STATUSES,
        timeout: float = TASK_TIMEOUT,
        seen: list[str] | None = None,
    ) -> dict[str, Any]:
        """Poll GET /api/task/{id} until its status is in `until`; every raw body read is
        appended to `seen`."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while True:
            response = self.client.get(f"/api/task/{task_id}")
            if seen is not None:
                seen.append(response.text)
            body = self.expect(response, 200)
            assert set(body) == {"task_id", "status", "result", "progress", "error"}, body
            if body["status"] in until:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"task {task_id} still {body['status']!r} after {timeout} s "
                    f"(waiting for {sorted(until)}): {body}\n{self.diagnostics()}"
                )
            time.sleep(0.05)

    def expect_success(self, task_id: str, seen: list[str] | None = None) -> Any:
        body = self.wait_for_task(task_id, seen=seen)
        assert body["status"] == "success", f"{body}\n{self.diagnostics()}"
        assert body["error"] is None, body
        return body["result"]

    def meta_keys(self) -> set[bytes]:
        return set(self.results_redis.scan_iter(match=b"*celery-task-meta-*", count=1000))


# --------------------------------------------------------------------------------------
# Fixtures


def _refused_for_good(recipient: str) -> bool:  # the SMTP sink answers 550
    return recipient.startswith("reject-")


def _refused_once(recipient: str) -> bool:  # the SMTP sink answers 451, then accepts
    return recipient.startswith("defer-")


def _webhook_status(path: str) -> int:
    return 500 if path.startswith("/fail") else 200


@pytest.fixture(scope="module")
def redis_server() -> None:
    """Redis is up (checked before the slow render and sync)."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)


@pytest.fixture(scope="module")
def project(rendered_projects: RenderedProjects) -> RenderedProject:
    """The default project (newest available Python), synced; shared with other modules."""
    versions = available_python_versions()
    # None at all: skip, or fail with TEMPLATE_REQUIRE_SERVICES=1, naming the default.
    return rendered_projects.synced(versions[-1] if versions else PYTHON_VERSIONS[-1])


@pytest.fixture(scope="module")
def stack(
    redis_server: None, project: RenderedProject, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Everything but the worker, started and ready."""
    logs = tmp_path_factory.mktemp("boot-logs")
    webhook_secret = secrets.token_hex(16)
    with (
        redis_databases(2, host=REDIS_HOST, port=REDIS_PORT) as (broker_db, results_db),
        SmtpSink(reject=_refused_for_good, defer_once=_refused_once) as smtp,
        WebhookReceiver(status_for=_webhook_status) as webhooks,
    ):
        api_port, flower_port = free_port(), free_port()
        env = {
            "CELERY_BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{broker_db}",
            "CELERY_RESULT_BACKEND": f"redis://{REDIS_HOST}:{REDIS_PORT}/{results_db}",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_STARTTLS": "false",
            "SMTP_TIMEOUT_SECONDS": "5",
            "EMAIL_MAX_RETRIES": "3",
            "EMAIL_RETRY_BACKOFF_SECONDS": "0.1",
            "WEBHOOK_SECRET": webhook_secret,
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "WEBHOOK_TIMEOUT_SECONDS": "5",
            "WEBHOOK_MAX_RETRIES": "2",
            "WEBHOOK_RETRY_BACKOFF_SECONDS": "0.1",
            "REPORT_STEPS": str(REPORT_STEPS),
            "REPORT_STEP_DELAY_SECONDS": str(REPORT_STEP_DELAY_SECONDS),
            "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "SSE_PING_SECONDS": "1",
            "RESULT_POLL_INTERVAL_SECONDS": "0.1",
            "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
            "PYTHONUNBUFFERED": "1",
        }
        api = ServiceProcess(
            name="api",
            args=[
                "uvicorn",
                f"{project.package_name}.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(api_port),
            ],
            cwd=project.path,
            env=env,
            log_path=logs / "api.log",
            ready_url=f"http://127.0.0.1:{api_port}/health/live",
            tail_skip=STATUS_POLL_LINE,
        )
        flower = ServiceProcess(
            name="flower",
            args=[
                "celery",
                "-A",
                f"{project.package_name}.celery_app",
                "flower",
                f"--port={flower_port}",
                "--address=127.0.0.1",
            ],
            cwd=project.path,
            env=env,
            log_path=logs / "flower.log",
            ready_url=f"http://127.0.0.1:{flower_port}/",
            ready_status=None,  # 401 without credentials is ready too
        )
        results_redis = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=results_db)
        with (
            api,
            flower,
            httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as client,
        ):
            yield Stack(
                project=project,
                env=env,
                logs=logs,
                api=api,
                flower=flower,
                smtp=smtp,
                webhooks=webhooks,
                results_redis=results_redis,
                client=client,
                webhook_secret=webhook_secret,
                flower_url=f"http://127.0.0.1:{flower_port}",
            )
        results_redis.close()


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[ServiceProcess]:
    name = f"boot-{uuid.uuid4().hex[:8]}"
    process = ServiceProcess(
        name="worker",
        args=[
            "celery",
            "-A",
            f"{stack.package}.celery_app",
            "worker",
            "--loglevel=INFO",
            "-E",
            "--concurrency=2",
            "--pool=prefork",
            "-n",
            f"{name}@%h",
        ],
        cwd=stack.project.path,
        env=stack.env,
        log_path=stack.logs / "worker.log",
        ready_log=rf"{name}@\S+ ready\.",
        stop_timeout=15,
    )
    with process:
        stack.worker = process
        yield process
        stack.worker = None


# --------------------------------------------------------------------------------------
# Queued, then run: must be first (it needs the API up and no worker yet)


def test_task_reads_queued_until_a_worker_runs_it_and_streams_every_step(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    if stack.worker is not None:
        pytest.skip("a worker is already running (this test must run before the others)")
    task_id = stack.submit("/api/report/7")

    queued = stack.expect(stack.client.get(f"/api/task/{task_id}"), 200)
    assert queued == {
        "task_id": task_id,
        "status": "queued",
        "result": None,
        "progress": None,
        "error": None,
    }

    opened = threading.Event()
    outcome: dict[str, Any] = {}

    def read() -> None:
        try:
            outcome["response"], outcome["events"] = read_sse(
                f"{stack.client.base_url}/api/task/{task_id}/stream",
                timeout=60,
                on_open=lambda _: opened.set(),
            )
        except BaseException as exc:
            outcome["error"] = exc
            opened.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(10), "the stream did not open within 10 s"
    time.sleep(0.3)  # let the stream subscribe before the worker exists
    request.getfixturevalue("worker")

    reader.join(60)
    assert not reader.is_alive(), "the stream did not end"
    if "error" in outcome:
        raise AssertionError(f"{outcome['error']}\n{stack.diagnostics()}")
    response: httpx.Response = outcome["response"]
    events: list[SseEvent] = outcome["events"]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [e.event for e in events]
    assert names == ["progress"] * REPORT_STEPS + ["complete"], events
    progress = [e.json() for e in events[:-1]]
    assert [p["current"] for p in progress] == list(range(1, REPORT_STEPS + 1)), progress
    assert {p["total"] for p in progress} == {REPORT_STEPS}, progress
    final = events[-1].json()
    assert final["task_id"] == task_id and final["status"] == "success", final
    assert final["result"]["user_id"] == 7 and final["result"]["sections"] == REPORT_STEPS, final

    assert stack.expect_success(task_id) == final["result"]


# --------------------------------------------------------------------------------------
# Health


def test_root_and_health(stack: Stack, worker: ServiceProcess) -> None:
    assert stack.expect(stack.client.get("/"), 200) == {"status": "ok", "app": "My Service"}
    assert stack.expect(stack.client.get("/health/live"), 200)["status"] == "ok"
    assert stack.expect(stack.client.get("/health/ready"), 200) == {
        "status": "ok",
        "broker": "ok",
        "result_backend": "ok",
    }


# --------------------------------------------------------------------------------------
# Tasks, each to its final result


def test_process_gives_summary_without_leaking_arguments(
    stack: Stack, worker: ServiceProcess
) -> None:
    marker = f"argument-{uuid.uuid4().hex}"
    data = {"zeta": [1, 2, 3], "alpha": {"nested": True}, "marker": marker}
    task_id = stack.submit("/api/process", json={"data": data})
    seen: list[str] = []
    result = stack.expect_success(task_id, seen=seen)
    assert result["keys"] == ["alpha", "marker", "zeta"], result
    assert result["item_count"] == 3, result
    assert result["checksum"] == canonical_checksum(data), result
    for body in seen:
        assert "Traceback" not in body and marker not in body, body


def test_async_process(stack: Stack, worker: ServiceProcess) -> None:
    data = {"a": 1, "b": 2}
    result = stack.expect_success(stack.submit("/api/async-process", json={"data": data}))
    assert result["async"] is True, result
    assert result["keys"] == ["a", "b"] and result["item_count"] == 2, result
    assert result["checksum"] == canonical_checksum(data), result


def test_report_stream_with_a_running_worker(stack: Stack, worker: ServiceProcess) -> None:
    task_id = stack.submit("/api/report/8")
    response, events = read_sse(f"{stack.client.base_url}/api/task/{task_id}/stream", timeout=30)
    assert response.status_code == 200, response.text
    assert [e.event for e in events[:-1]] == ["progress"] * (len(events) - 1), events
    assert events[-1].event == "complete", events
    # The stream opens after the task may have started: early steps can be missed, but
    # what comes is in order and ends at the last step.
    currents = [e.json()["current"] for e in events[:-1]]
    assert currents == sorted(set(currents)) and currents[-1] == REPORT_STEPS, currents
    assert {e.json()["total"] for e in events[:-1]} == {REPORT_STEPS}, events
    final = events[-1].json()
    assert final["status"] == "success" and final["result"]["user_id"] == 8, final

    # The stream of a finished task is just its final event.
    response, events = read_sse(f"{stack.client.base_url}/api/task/{task_id}/stream", timeout=10)
    assert [e.event for e in events] == ["complete"], events
    assert events[0].json() == final


def test_report_progress_is_readable_mid_way(stack: Stack, worker: ServiceProcess) -> None:
    task_id = stack.submit("/api/report/9")
    body = stack.wait_for_task(task_id, until=frozenset({"progress", *FINAL_STATUSES}))
    assert body["status"] == "progress", body
    assert body["progress"]["total"] == REPORT_STEPS, body
    assert 1 <= body["progress"]["current"] <= REPORT_STEPS, body
    assert body["result"] is None and body["error"] is None, body
    assert stack.expect_success(task_id)["user_id"] == 9


def test_email_is_delivered(stack: Stack, worker: ServiceProcess) -> None:
    to = f"user-{uuid.uuid4().hex[:8]}@example.com"
    subject, text = "Boot test", f"Hello from the boot test {uuid.uuid4().hex}"
    task_id = stack.submit("/api/email", json={"to": to, "subject": subject, "body": text})
    mail = stack.smtp.wait_for(lambda m: to in m.rcpt_tos, timeout=TASK_TIMEOUT)
    assert mail.subject == subject
    assert mail.body.strip() == text
    assert str(mail.message["To"]) == to
    result = stack.expect_success(task_id)
    assert result["recipient"] == to, result
    assert result["message_id"], result


def test_email_temporary_refusal_is_retried(stack: Stack, worker: ServiceProcess) -> None:
    to = f"defer-{uuid.uuid4().hex[:8]}@example.com"
    task_id = stack.submit("/api/email", json={"to": to, "subject": "Retry", "body": "again"})
    stack.smtp.wait_for(lambda m: to in m.rcpt_tos, timeout=TASK_TIMEOUT)
    assert (to, "451") in stack.smtp.refusals
    assert stack.expect_success(task_id)["recipient"] == to


def test_email_permanent_refusal_fails_without_traceback(
    stack: Stack, worker: ServiceProcess
) -> None:
    to = f"reject-{uuid.uuid4().hex[:8]}@example.com"
    text = f"body-{uuid.uuid4().hex}"
    task_id = stack.submit("/api/email", json={"to": to, "subject": "Nope", "body": text})
    seen: list[str] = []
    body = stack.wait_for_task(task_id, seen=seen)
    assert body["status"] == "failure", f"{body}\n{stack.diagnostics()}"
    assert body["result"] is None, body
    assert isinstance(body["error"], str) and body["error"], body
    for raw in seen:
        assert "Traceback" not in raw and text not in raw, raw
    assert (to, "550") in stack.smtp.refusals


def test_combined(stack: Stack, worker: ServiceProcess) -> None:
    data = {"combined": uuid.uuid4().hex}
    result = stack.expect_success(stack.submit("/api/combined", json={"data": data}))
    assert result["keys"] == ["combined"], result


def test_webhook_is_signed_and_delivered(stack: Stack, worker: ServiceProcess) -> None:
    url = stack.webhooks.url(f"/hook/{uuid.uuid4().hex}")
    data = {"order": 42, "items": ["a", "b"]}
    task_id = stack.submit(
        "/api/task-with-webhook", params={"webhook_url": url}, json={"data": data}
    )
    hook = stack.webhooks.wait_for(lambda r: url.endswith(r.path), timeout=TASK_TIMEOUT)
    assert hook.method == "POST"
    expected = hmac.new(stack.webhook_secret.encode(), hook.body, hashlib.sha256).hexdigest()
    assert hook.headers.get("x-webhook-signature") == f"sha256={expected}", hook.headers
    assert hook.headers.get("content-type", "").startswith("application/json"), hook.headers
    payload = hook.json()
    assert payload["task_id"] == task_id, payload
    assert payload["result"]["keys"] == ["items", "order"], payload
    assert payload["result"]["checksum"] == canonical_checksum(data), payload

    result = stack.expect_success(task_id)
    assert result["result"] == payload["result"], result
    assert result["webhook"] == {"url": url, "status_code": 200}, result


def test_webhook_target_failing_ends_in_failure(stack: Stack, worker: ServiceProcess) -> None:
    url = stack.webhooks.url(f"/fail/{uuid.uuid4().hex}")
    task_id = stack.submit(
        "/api/task-with-webhook", params={"webhook_url": url}, json={"data": {"x": 1}}
    )
    body = stack.wait_for_task(task_id)
    assert body["status"] == "failure", f"{body}\n{stack.diagnostics()}"
    assert "Traceback" not in (body["error"] or ""), body
    attempts = [r for r in stack.webhooks.requests if url.endswith(r.path)]
    assert len(attempts) == 1 + 2, attempts  # first try + WEBHOOK_MAX_RETRIES


def test_workflow(stack: Stack, worker: ServiceProcess) -> None:
    data = {" Name ": "x", "Count": 2}
    result = stack.expect_success(stack.submit("/api/workflow", json={"data": data}))
    assert result["steps"] == ["validate", "transform", "summarize"], result
    assert result["keys"] == ["count", "name"], result


def test_quick_log(stack: Stack, worker: ServiceProcess) -> None:
    body = stack.expect(stack.client.post("/api/quick-log", json={"data": {"q": 1}}), 202)
    assert body == {"status": "accepted", "message": body["message"]} and body["message"], body


@pytest.mark.parametrize("path", ["/api/quick-log", "/api/combined"])
def test_background_log_line_reaches_the_api_log(
    stack: Stack, worker: ServiceProcess, path: str
) -> None:
    """The in-process BackgroundTasks log line is visible in the API's output (under uvicorn)."""
    offset = stack.api.log_size()
    field_name = f"field_{uuid.uuid4().hex}"
    stack.expect(stack.client.post(path, json={"data": {field_name: 1}}), 202)
    stack.api.wait_for_log(re.escape(field_name), timeout=5, since=offset)


# --------------------------------------------------------------------------------------
# Cancelling, unknown ids, finished tasks


def test_cancel_a_running_report(stack: Stack, worker: ServiceProcess) -> None:
    task_id = stack.submit("/api/report/10")
    started = time.monotonic()
    running = stack.wait_for_task(task_id, until=frozenset({"progress", *FINAL_STATUSES}))
    assert running["status"] == "progress", running

    body = stack.expect(stack.client.delete(f"/api/task/{task_id}"), 202)
    assert body["task_id"] == task_id and body["status"] == "revoked" and body["message"], body
    assert stack.wait_for_task(task_id, timeout=10)["status"] == "revoked"

    _, events = read_sse(f"{stack.client.base_url}/api/task/{task_id}/stream", timeout=10)
    assert [e.event for e in events] == ["failure"], events
    assert events[0].json()["status"] == "revoked", events

    # Past the time the report would have taken, it still reads revoked: it was stopped,
    # not left to finish and overwrite the state.
    time.sleep(max(0.0, started + REPORT_STEPS * REPORT_STEP_DELAY_SECONDS + 1 - time.monotonic()))
    final = stack.expect(stack.client.get(f"/api/task/{task_id}"), 200)
    assert final["status"] == "revoked", f"{final}\n{stack.diagnostics()}"
    # A cancelled task counts as finished.
    stack.expect(stack.client.delete(f"/api/task/{task_id}"), 409)


def test_unknown_task_ids_are_404(stack: Stack, worker: ServiceProcess) -> None:
    unknown = str(uuid.uuid4())
    for method, path in (
        ("GET", f"/api/task/{unknown}"),
        ("GET", f"/api/task/{unknown}/stream"),
        ("DELETE", f"/api/task/{unknown}"),
    ):
        body = stack.expect(stack.client.request(method, path), 404)
        assert isinstance(body.get("detail"), str) and body["detail"], (method, path, body)


def test_cancel_a_finished_task_is_409(stack: Stack, worker: ServiceProcess) -> None:
    task_id = stack.submit("/api/process", json={"data": {"done": True}})
    stack.expect_success(task_id)
    stack.expect(stack.client.delete(f"/api/task/{task_id}"), 409)
    assert stack.expect(stack.client.get(f"/api/task/{task_id}"), 200)["status"] == "success"


# --------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        pytest.param(
            "POST",
            "/api/process",
            {"content": b'{"data": {', "headers": {"content-type": "application/json"}},
            id="malformed-json",
        ),
        pytest.param("POST", "/api/process", {"json": {"data": "not an object"}}, id="wrong-type"),
        pytest.param("POST", "/api/process", {"json": {"other": {}}}, id="missing-field"),
        pytest.param("POST", "/api/report/abc", {}, id="user-id-not-int"),
        pytest.param("POST", "/api/report/0", {}, id="user-id-below-1"),
        pytest.param(
            "POST",
            "/api/email",
            {"json": {"to": "not-an-email", "subject": "s", "body": "b"}},
            id="bad-email",
        ),
        pytest.param(
            "POST",
            "/api/task-with-webhook",
            {"params": {"webhook_url": "ftp://x"}, "json": {"data": {}}},
            id="webhook-not-http",
        ),
        pytest.param(
            "POST", "/api/task-with-webhook", {"json": {"data": {}}}, id="webhook-url-missing"
        ),
    ],
)
def test_bad_input_is_422(stack: Stack, method: str, path: str, kwargs: dict[str, Any]) -> None:
    keys_before = stack.meta_keys()
    stack.expect(stack.client.request(method, path, **kwargs), 422)
    assert stack.meta_keys() == keys_before, "a rejected request left a task record"


def test_body_over_limit_is_413(stack: Stack) -> None:
    big = {"data": {"x": "a" * (MAX_BODY_BYTES + 1)}}
    body = stack.expect(stack.client.post("/api/process", json=big), 413)
    assert body["detail"], body


def test_streamed_body_over_limit_is_413(stack: Stack) -> None:
    chunk = b'{"data": {"x": "' + b"a" * MAX_BODY_BYTES + b'"}}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield chunk[:100]
        yield chunk[100:]

    response = stack.client.post(
        "/api/process", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    stack.expect(response, 413)


# --------------------------------------------------------------------------------------
# Broker down


def test_broker_down_is_503_and_leaves_no_record(stack: Stack) -> None:
    port = free_port()
    env = {
        **stack.env,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0",
        "BROKER_SOCKET_TIMEOUT_SECONDS": "1",
    }
    api = ServiceProcess(
        name="api-broker-down",
        args=["uvicorn", f"{stack.package}.main:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=stack.project.path,
        env=env,
        log_path=stack.logs / "api-broker-down.log",
        ready_url=f"http://127.0.0.1:{port}/health/live",
    )
    with api, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
        keys_before = stack.meta_keys()
        started = time.monotonic()
        response = client.post("/api/process", json={"data": {"x": 1}})
        elapsed = time.monotonic() - started
        assert response.status_code == 503, f"{response.text}\n{api.describe('API', 30)}"
        detail = response.json().get("detail")
        assert isinstance(detail, str) and "broker" in detail.lower(), response.text
        assert elapsed < 3.5, f"503 took {elapsed:.1f} s"
        assert stack.meta_keys() == keys_before, "the failed submission left a task record"

        ready = client.get("/health/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["broker"] != "ok", ready.text
        assert ready.json()["result_backend"] == "ok", ready.text


# --------------------------------------------------------------------------------------
# Flower


def test_flower_requires_basic_auth(stack: Stack, worker: ServiceProcess) -> None:
    url = f"{stack.flower_url}/api/workers"
    assert httpx.get(url, timeout=15).status_code == 401
    authed = httpx.get(url, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=15)
    assert authed.status_code == 200, f"{authed.text[:500]}\n{stack.flower.describe('flower', 30)}"
    assert httpx.get(url, auth=(FLOWER_USER, "wrong"), timeout=15).status_code == 401
