"""Boot rendered services for real and drive their endpoints over HTTP.

One stack per booted variant (tests/variants.py `BOOT_VARIANTS`: every broker x result
backend pair, each option on and off at least once), at the default python_version. The
stack: a broker and a result backend of its own (Redis databases, a RabbitMQ vhost, a
PostgreSQL database), an SMTP sink and a webhook receiver when the variant has email and
webhooks, the API (uvicorn), Flower when it has Flower and, from the first test that
needs it on, one Celery worker; beat last, for the tests of periodic tasks.

Each test is generated only for the variants it applies to (`@each(applies)`), never
skipped: the `boot` fixture is parametrized at module scope, so pytest runs a variant's
tests together and boots its stack once. Under xdist a variant's tests are one unit of
work for one worker (conftest's scheduler). Order matters within a variant: the first
tests need the API up and no worker yet; beat's tests come last (its tasks write results).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.boot import (
    Backends,
    PostgresResultRecords,
    ServiceProcess,
    SmtpSink,
    WebhookReceiver,
    api_process,
    closed_port,
    free_port,
    read_sse,
    read_sse_in_background,
    variant_backends,
    wait_for_task,
    worker_process,
)
from tests.matrix import DEFAULT_PYTHON
from tests.projects import RenderedProjects
from tests.rendering import RenderedProject
from tests.services import (
    RABBITMQ_HOST,
    RABBITMQ_MANAGEMENT_PORT,
    RABBITMQ_PASSWORD,
    RABBITMQ_USER,
    rabbitmq_api_url,
)
from tests.variants import BootVariant, Variant, boot_params

pytestmark = pytest.mark.boot

REPORT_STEPS = 20
REPORT_STEP_DELAY_SECONDS = 0.1  # a report runs 2 s: long enough to be cancelled mid-way
MAX_BODY_BYTES = 1024
FLOWER_USER, FLOWER_PASSWORD = "admin", "secret"
TASK_TIMEOUT = 30.0
CONCURRENT_SUBMITS, CONCURRENT_CLIENTS = 200, 32
# Status polls: routine access-log lines, left out of the API's log tail in failure reports.
STATUS_POLL_LINE = r'"GET /api/task/[^/ ]+ HTTP/1\.1" 200'

FINAL_STATUSES = frozenset({"success", "failure", "revoked"})


def each(applies: Callable[[Variant], bool] = lambda _: True) -> pytest.MarkDecorator:
    """Generate the test for each booted variant it applies to (one stack per variant)."""
    return pytest.mark.parametrize("boot", boot_params(applies), indirect=True, scope="module")


def canonical_checksum(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class Stack:
    variant: Variant
    project: RenderedProject
    env: dict[str, str]
    logs: Path
    backends: Backends
    api: ServiceProcess
    client: httpx.Client
    flower: ServiceProcess | None
    smtp: SmtpSink | None
    webhooks: WebhookReceiver | None
    webhook_secret: str
    flower_url: str
    worker: ServiceProcess | None = None
    beat: ServiceProcess | None = None

    @property
    def package(self) -> str:
        return self.project.package_name

    def diagnostics(self) -> str:
        parts = [self.api.describe("API", 30)]
        for process, lines in ((self.worker, 40), (self.beat, 20)):
            if process is not None:
                parts.append(process.describe(process.name, lines))
        return "\n".join(parts)

    # -- HTTP helpers ------------------------------------------------------------------

    def expect(self, response: httpx.Response, status: int) -> Any:
        """The JSON body of a response that must have `status`."""
        assert response.status_code == status, (
            f"{response.request.method} {response.request.url} -> {response.status_code}, "
            f"expected {status}: {response.text[:1000]}\n{self.diagnostics()}"
        )
        return response.json()

    def submit(self, path: str, client: httpx.Client | None = None, **kwargs: Any) -> str:
        """POST a task (through `client`, else the stack's); check the 202 body; return the
        task id."""
        body = self.expect((client or self.client).post(path, **kwargs), 202)
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
        return wait_for_task(
            self.client,
            task_id,
            until,
            timeout=timeout,
            diagnostics=self.diagnostics,
            seen=seen,
        )

    def expect_success(self, task_id: str, seen: list[str] | None = None) -> Any:
        body = self.wait_for_task(task_id, seen=seen)
        assert body["status"] == "success", f"{body}\n{self.diagnostics()}"
        assert body["error"] is None, body
        return body["result"]

    def stream(self, task_id: str, timeout: float, **kwargs: Any) -> Any:
        return read_sse(
            f"{self.client.base_url}/api/task/{task_id}/stream", timeout=timeout, **kwargs
        )


# --------------------------------------------------------------------------------------
# Fixtures


def _refused_for_good(recipient: str) -> bool:  # the SMTP sink answers 550
    return recipient.startswith("reject-")


def _refused_once(recipient: str) -> bool:  # the SMTP sink answers 451, then accepts
    return recipient.startswith("defer-")


def _webhook_status(path: str) -> int:
    return 500 if path.startswith("/fail") else 200


@pytest.fixture(scope="module")
def boot(request: pytest.FixtureRequest) -> BootVariant:
    """The booted variant (parametrized indirectly by `@each`)."""
    assert isinstance(request.param, BootVariant)
    return request.param


@pytest.fixture(scope="module")
def backends(boot: BootVariant) -> Iterator[Backends]:
    """The variant's own broker and result backend (checked before the slow sync)."""
    with variant_backends(boot.variant.broker, boot.variant.result_backend) as made:
        yield made


def stack_env(variant: Variant, backends: Backends, smtp: SmtpSink | None) -> dict[str, str]:
    env = {
        "CELERY_BROKER_URL": backends.broker_url,
        "CELERY_RESULT_BACKEND": backends.result_backend_url,
        "REPORT_STEPS": str(REPORT_STEPS),
        "REPORT_STEP_DELAY_SECONDS": str(REPORT_STEP_DELAY_SECONDS),
        "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "PYTHONUNBUFFERED": "1",
    }
    if variant.use_sse:
        env |= {"SSE_PING_SECONDS": "1", "RESULT_POLL_INTERVAL_SECONDS": "0.05"}
    if smtp is not None:
        env |= {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_STARTTLS": "false",
            "SMTP_TIMEOUT_SECONDS": "5",
            "EMAIL_MAX_RETRIES": "3",
            "EMAIL_RETRY_BACKOFF_SECONDS": "0.1",
        }
    if variant.use_webhooks:
        env |= {
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "WEBHOOK_TIMEOUT_SECONDS": "5",
            "WEBHOOK_MAX_RETRIES": "2",
            "WEBHOOK_RETRY_BACKOFF_SECONDS": "0.1",
        }
    if variant.use_flower:
        env["FLOWER_BASIC_AUTH"] = f"{FLOWER_USER}:{FLOWER_PASSWORD}"
        if variant.broker == "rabbitmq":
            env["FLOWER_BROKER_API"] = (
                f"http://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@{RABBITMQ_HOST}:"
                f"{RABBITMQ_MANAGEMENT_PORT}/api/"
            )
    if variant.use_beat:
        env["HEARTBEAT_INTERVAL_SECONDS"] = "1"
        if variant.result_backend == "postgresql":
            env["RESULT_CLEANUP_INTERVAL_SECONDS"] = "1"
    return env


@pytest.fixture(scope="module")
def stack(
    boot: BootVariant,
    backends: Backends,
    rendered_projects: RenderedProjects,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Everything but the worker and beat, started and ready."""
    variant = boot.variant
    project = rendered_projects.synced(DEFAULT_PYTHON, variant)
    logs = tmp_path_factory.mktemp(f"boot-{boot.letter}")
    webhook_secret = secrets.token_hex(16)
    with contextlib.ExitStack() as parts:
        smtp = (
            parts.enter_context(SmtpSink(reject=_refused_for_good, defer_once=_refused_once))
            if variant.use_email
            else None
        )
        webhooks = (
            parts.enter_context(WebhookReceiver(status_for=_webhook_status))
            if variant.use_webhooks
            else None
        )
        env = stack_env(variant, backends, smtp)
        if variant.use_webhooks:
            env["WEBHOOK_SECRET"] = webhook_secret
        api_port, flower_port = free_port(), free_port()
        api = api_process(
            project, port=api_port, env=env, log_path=logs / "api.log", tail_skip=STATUS_POLL_LINE
        )
        parts.enter_context(api)
        flower = None
        if variant.use_flower:
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
            parts.enter_context(flower)
        client = parts.enter_context(
            httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10)
        )
        yield Stack(
            variant=variant,
            project=project,
            env=env,
            logs=logs,
            backends=backends,
            api=api,
            client=client,
            flower=flower,
            smtp=smtp,
            webhooks=webhooks,
            webhook_secret=webhook_secret,
            flower_url=f"http://127.0.0.1:{flower_port}",
        )


@pytest.fixture(scope="module")
def worker(stack: Stack) -> Iterator[ServiceProcess]:
    process = worker_process(
        stack.project,
        env=stack.env,
        log_path=stack.logs / "worker.log",
        options=("-E", "--pool=prefork"),
    )
    with process:
        stack.worker = process
        yield process
        stack.worker = None


@pytest.fixture(scope="module")
def beat(stack: Stack, worker: ServiceProcess) -> Iterator[ServiceProcess]:
    """celery beat, as compose runs it, with the schedule file in the logs folder."""
    process = ServiceProcess(
        name="beat",
        args=[
            "celery",
            "-A",
            f"{stack.package}.celery_app",
            "beat",
            "--loglevel=INFO",
            f"--schedule={stack.logs / 'celerybeat-schedule'}",
        ],
        cwd=stack.project.path,
        env=stack.env,
        log_path=stack.logs / "beat.log",
        ready_log=r"beat: Starting",
    )
    with process:
        stack.beat = process
        yield process
        stack.beat = None


# --------------------------------------------------------------------------------------
# Queued, then run: these must be first (they need the API up and no worker yet)


def _expect_queued(stack: Stack, task_id: str) -> None:
    if stack.worker is not None:
        pytest.fail("a worker is already running: this test must run before the others")
    queued = stack.expect(stack.client.get(f"/api/task/{task_id}"), 200)
    assert queued == {
        "task_id": task_id,
        "status": "queued",
        "result": None,
        "progress": None,
        "error": None,
    }


@each(lambda v: v.use_sse)
def test_task_reads_queued_until_a_worker_runs_it_and_streams_every_step(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    task_id = stack.submit("/api/report/7")
    _expect_queued(stack, task_id)

    # The stream subscribes before the worker exists.
    stream = read_sse_in_background(
        f"{stack.client.base_url}/api/task/{task_id}/stream", timeout=60
    )
    request.getfixturevalue("worker")

    response, events = stream.result(60, stack.diagnostics)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [e.event for e in events]
    progress = [e.json() for e in events[:-1]]
    currents = [p["current"] for p in progress]
    if stack.variant.result_backend == "redis":
        # Pushed through pub/sub: every step arrives.
        assert names == ["progress"] * REPORT_STEPS + ["complete"], events
        assert currents == list(range(1, REPORT_STEPS + 1)), progress
    else:
        # Polled (RESULT_POLL_INTERVAL_SECONDS): steps between two polls are not seen, but
        # what comes is in order and the stream follows the task to its end.
        assert names == ["progress"] * len(progress) + ["complete"], events
        assert len(progress) >= 3, events
        assert currents == sorted(set(currents)), currents
        assert set(currents) <= set(range(1, REPORT_STEPS + 1)), currents
    assert {p["total"] for p in progress} == {REPORT_STEPS}, progress
    final = events[-1].json()
    assert final["task_id"] == task_id and final["status"] == "success", final
    assert final["result"]["user_id"] == 7 and final["result"]["sections"] == REPORT_STEPS, final

    assert stack.expect_success(task_id) == final["result"]


@each(lambda v: not v.use_sse)
def test_task_reads_queued_until_a_worker_runs_it(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    task_id = stack.submit("/api/report/7")
    _expect_queued(stack, task_id)
    time.sleep(0.5)
    _expect_queued(stack, task_id)  # still queued: nothing consumes it
    request.getfixturevalue("worker")
    result = stack.expect_success(task_id)
    assert result["user_id"] == 7 and result["sections"] == REPORT_STEPS, result


# --------------------------------------------------------------------------------------
# Health and the variant's endpoints


@each()
def test_root_and_health(stack: Stack, worker: ServiceProcess) -> None:
    assert stack.expect(stack.client.get("/"), 200) == {"status": "ok", "app": "My Service"}
    assert stack.expect(stack.client.get("/health/live"), 200)["status"] == "ok"
    assert stack.expect(stack.client.get("/health/ready"), 200) == {
        "status": "ok",
        "broker": "ok",
        "result_backend": "ok",
    }


def expected_paths(variant: Variant) -> set[str]:
    """The API's paths per CONTRACT.md, less the endpoints of options that are off."""
    paths = {
        "/",
        "/health/live",
        "/health/ready",
        "/api/process",
        "/api/async-process",
        "/api/report/{user_id}",
        "/api/combined",
        "/api/workflow",
        "/api/quick-log",
        "/api/task/{task_id}",
    }
    if variant.use_email:
        paths.add("/api/email")
    if variant.use_webhooks:
        paths.add("/api/task-with-webhook")
    if variant.use_sse:
        paths.add("/api/task/{task_id}/stream")
    return paths


@each()
def test_openapi_lists_exactly_the_variants_endpoints(stack: Stack) -> None:
    schema = stack.expect(stack.client.get("/openapi.json"), 200)
    assert set(schema["paths"]) == expected_paths(stack.variant)


@each(lambda v: not (v.use_email and v.use_webhooks and v.use_sse))
def test_endpoints_of_options_that_are_off_are_404(stack: Stack, worker: ServiceProcess) -> None:
    task_id = stack.submit("/api/process", json={"data": {"a": 1}})
    stack.expect_success(task_id)
    gone: list[tuple[str, str, dict[str, Any]]] = []
    if not stack.variant.use_email:
        gone.append(
            ("POST", "/api/email", {"json": {"to": "a@example.com", "subject": "s", "body": "b"}})
        )
    if not stack.variant.use_webhooks:
        gone.append(
            (
                "POST",
                "/api/task-with-webhook",
                {"params": {"webhook_url": "http://example.com/hook"}, "json": {"data": {}}},
            )
        )
    if not stack.variant.use_sse:
        gone.append(("GET", f"/api/task/{task_id}/stream", {}))
    for method, path, kwargs in gone:
        stack.expect(stack.client.request(method, path, **kwargs), 404)


# --------------------------------------------------------------------------------------
# Tasks, each to its final result


@each()
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


@each()
def test_async_process(stack: Stack, worker: ServiceProcess) -> None:
    data = {"a": 1, "b": 2}
    result = stack.expect_success(stack.submit("/api/async-process", json={"data": data}))
    assert result["async"] is True, result
    assert result["keys"] == ["a", "b"] and result["item_count"] == 2, result
    assert result["checksum"] == canonical_checksum(data), result


@each(lambda v: v.use_sse)
def test_report_stream_with_a_running_worker(stack: Stack, worker: ServiceProcess) -> None:
    task_id = stack.submit("/api/report/8")
    response, events = stack.stream(task_id, timeout=30)
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
    response, events = stack.stream(task_id, timeout=10)
    assert [e.event for e in events] == ["complete"], events
    assert events[0].json() == final


@each()
def test_report_progress_is_readable_mid_way(stack: Stack, worker: ServiceProcess) -> None:
    task_id = stack.submit("/api/report/9")
    body = stack.wait_for_task(task_id, until=frozenset({"progress", *FINAL_STATUSES}))
    assert body["status"] == "progress", body
    assert body["progress"]["total"] == REPORT_STEPS, body
    assert 1 <= body["progress"]["current"] <= REPORT_STEPS, body
    assert body["result"] is None and body["error"] is None, body
    assert stack.expect_success(task_id)["user_id"] == 9


@each(lambda v: v.use_email)
def test_email_is_delivered(stack: Stack, worker: ServiceProcess) -> None:
    assert stack.smtp is not None
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


@each(lambda v: v.use_email)
def test_email_temporary_refusal_is_retried(stack: Stack, worker: ServiceProcess) -> None:
    assert stack.smtp is not None
    to = f"defer-{uuid.uuid4().hex[:8]}@example.com"
    task_id = stack.submit("/api/email", json={"to": to, "subject": "Retry", "body": "again"})
    stack.smtp.wait_for(lambda m: to in m.rcpt_tos, timeout=TASK_TIMEOUT)
    assert (to, "451") in stack.smtp.refusals
    assert stack.expect_success(task_id)["recipient"] == to


@each(lambda v: v.use_email)
def test_email_permanent_refusal_fails_without_traceback(
    stack: Stack, worker: ServiceProcess
) -> None:
    assert stack.smtp is not None
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


@each()
def test_combined(stack: Stack, worker: ServiceProcess) -> None:
    data = {"combined": uuid.uuid4().hex}
    result = stack.expect_success(stack.submit("/api/combined", json={"data": data}))
    assert result["keys"] == ["combined"], result


@each(lambda v: v.use_webhooks)
def test_webhook_is_signed_and_delivered(stack: Stack, worker: ServiceProcess) -> None:
    assert stack.webhooks is not None
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


@each(lambda v: v.use_webhooks)
def test_webhook_target_failing_ends_in_failure(stack: Stack, worker: ServiceProcess) -> None:
    assert stack.webhooks is not None
    url = stack.webhooks.url(f"/fail/{uuid.uuid4().hex}")
    task_id = stack.submit(
        "/api/task-with-webhook", params={"webhook_url": url}, json={"data": {"x": 1}}
    )
    body = stack.wait_for_task(task_id)
    assert body["status"] == "failure", f"{body}\n{stack.diagnostics()}"
    assert "Traceback" not in (body["error"] or ""), body
    attempts = [r for r in stack.webhooks.requests if url.endswith(r.path)]
    assert len(attempts) == 1 + 2, attempts  # first try + WEBHOOK_MAX_RETRIES


@each()
def test_workflow(stack: Stack, worker: ServiceProcess) -> None:
    data = {" Name ": "x", "Count": 2}
    result = stack.expect_success(stack.submit("/api/workflow", json={"data": data}))
    assert result["steps"] == ["validate", "transform", "summarize"], result
    assert result["keys"] == ["count", "name"], result


@each()
def test_concurrent_submits_each_run_with_their_own_data(
    stack: Stack, worker: ServiceProcess
) -> None:
    """Many requests in flight at once, as under load (the Redis publisher and result store
    batch the commands of concurrent requests): each is queued under an id of its own, and
    each id's result, read concurrently too, is computed from its own payload."""
    payloads = [{"request": n, "marker": uuid.uuid4().hex} for n in range(CONCURRENT_SUBMITS)]
    # A client per thread: one httpx.Client shared by many threads failed reads with
    # "Bad file descriptor" (its connection pool is not made for that).
    per_thread = threading.local()
    clients: list[httpx.Client] = []

    def thread_client() -> httpx.Client:
        if not hasattr(per_thread, "client"):
            per_thread.client = httpx.Client(
                base_url=stack.client.base_url,
                headers=stack.client.headers,
                timeout=stack.client.timeout,
            )
            clients.append(per_thread.client)
        client: httpx.Client = per_thread.client
        return client

    def submit(data: dict[str, object]) -> str:
        return stack.submit("/api/process", client=thread_client(), json={"data": data})

    def status(task_id: str) -> Any:
        return stack.expect(thread_client().get(f"/api/task/{task_id}"), 200)

    try:
        with ThreadPoolExecutor(max_workers=CONCURRENT_CLIENTS) as pool:
            task_ids = list(pool.map(submit, payloads))
            assert len(set(task_ids)) == len(task_ids), task_ids
            for task_id in task_ids:
                stack.expect_success(task_id)
            bodies = list(pool.map(status, task_ids))
    finally:
        for client in clients:
            client.close()
    for task_id, data, body in zip(task_ids, payloads, bodies, strict=True):
        assert body["task_id"] == task_id, body
        assert body["status"] == "success", body
        assert body["result"]["checksum"] == canonical_checksum(data), (data, body)


@each()
def test_quick_log(stack: Stack, worker: ServiceProcess) -> None:
    body = stack.expect(stack.client.post("/api/quick-log", json={"data": {"q": 1}}), 202)
    assert body == {"status": "accepted", "message": body["message"]} and body["message"], body


@each()
@pytest.mark.parametrize("path", ["/api/quick-log", "/api/combined"], ids=["quick-log", "combined"])
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


def _cancel_running_report(stack: Stack, user_id: int) -> tuple[str, float]:
    task_id = stack.submit(f"/api/report/{user_id}")
    started = time.monotonic()
    running = stack.wait_for_task(task_id, until=frozenset({"progress", *FINAL_STATUSES}))
    assert running["status"] == "progress", running
    body = stack.expect(stack.client.delete(f"/api/task/{task_id}"), 202)
    assert body["task_id"] == task_id and body["status"] == "revoked" and body["message"], body
    assert stack.wait_for_task(task_id, timeout=10)["status"] == "revoked"
    return task_id, started


@each()
def test_cancel_a_running_report(stack: Stack, worker: ServiceProcess) -> None:
    task_id, started = _cancel_running_report(stack, 10)
    # Past the time the report would have taken, it still reads revoked: it was stopped,
    # not left to finish and overwrite the state.
    time.sleep(max(0.0, started + REPORT_STEPS * REPORT_STEP_DELAY_SECONDS + 1 - time.monotonic()))
    final = stack.expect(stack.client.get(f"/api/task/{task_id}"), 200)
    assert final["status"] == "revoked", f"{final}\n{stack.diagnostics()}"
    # A cancelled task counts as finished.
    stack.expect(stack.client.delete(f"/api/task/{task_id}"), 409)


@each(lambda v: v.use_sse)
def test_stream_of_a_cancelled_task_is_one_failure_event(
    stack: Stack, worker: ServiceProcess
) -> None:
    task_id, _ = _cancel_running_report(stack, 11)
    _, events = stack.stream(task_id, timeout=10)
    assert [e.event for e in events] == ["failure"], events
    assert events[0].json()["status"] == "revoked", events


@each()
def test_unknown_task_ids_are_404(stack: Stack, worker: ServiceProcess) -> None:
    unknown = str(uuid.uuid4())
    requests = [("GET", f"/api/task/{unknown}"), ("DELETE", f"/api/task/{unknown}")]
    if stack.variant.use_sse:
        requests.append(("GET", f"/api/task/{unknown}/stream"))
    for method, path in requests:
        body = stack.expect(stack.client.request(method, path), 404)
        assert isinstance(body.get("detail"), str) and body["detail"], (method, path, body)


@each()
def test_cancel_a_finished_task_is_409(stack: Stack, worker: ServiceProcess) -> None:
    task_id = stack.submit("/api/process", json={"data": {"done": True}})
    stack.expect_success(task_id)
    stack.expect(stack.client.delete(f"/api/task/{task_id}"), 409)
    assert stack.expect(stack.client.get(f"/api/task/{task_id}"), 200)["status"] == "success"


# --------------------------------------------------------------------------------------
# Bad input


def _always(_: Variant) -> bool:
    return True


# (case, request, applies to): each case only for the variants having its endpoint.
BAD_INPUT: list[tuple[str, tuple[str, str, dict[str, Any]], Callable[[Variant], bool]]] = [
    (
        "malformed-json",
        (
            "POST",
            "/api/process",
            {"content": b'{"data": {', "headers": {"content-type": "application/json"}},
        ),
        _always,
    ),
    ("wrong-type", ("POST", "/api/process", {"json": {"data": "not an object"}}), _always),
    ("missing-field", ("POST", "/api/process", {"json": {"other": {}}}), _always),
    ("user-id-not-int", ("POST", "/api/report/abc", {}), _always),
    ("user-id-below-1", ("POST", "/api/report/0", {}), _always),
    (
        "bad-email",
        ("POST", "/api/email", {"json": {"to": "not-an-email", "subject": "s", "body": "b"}}),
        lambda v: v.use_email,
    ),
    (
        "webhook-not-http",
        (
            "POST",
            "/api/task-with-webhook",
            {"params": {"webhook_url": "ftp://x"}, "json": {"data": {}}},
        ),
        lambda v: v.use_webhooks,
    ),
    (
        "webhook-url-missing",
        ("POST", "/api/task-with-webhook", {"json": {"data": {}}}),
        lambda v: v.use_webhooks,
    ),
]


@each()
def test_bad_input_is_422_and_leaves_no_record(stack: Stack) -> None:
    """Every bad-input case of the variant's endpoints (one test: the cases depend on the
    variant, and a parametrize of its own would split the variant's tests apart)."""
    failures = []
    for case, (method, path, kwargs), applies in BAD_INPUT:
        if not applies(stack.variant):
            continue
        records_before = stack.backends.results.snapshot()
        response = stack.client.request(method, path, **kwargs)
        if response.status_code != 422:
            failures.append(f"{case}: {method} {path} -> {response.status_code}: {response.text}")
        elif stack.backends.results.snapshot() != records_before:
            failures.append(f"{case}: the rejected request left a task record")
    assert not failures, "\n".join(failures) + "\n" + stack.diagnostics()


@each()
def test_body_over_limit_is_413(stack: Stack) -> None:
    big = {"data": {"x": "a" * (MAX_BODY_BYTES + 1)}}
    body = stack.expect(stack.client.post("/api/process", json=big), 413)
    assert body["detail"], body


@each()
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


def unreachable_broker_url(broker: str) -> str:
    if broker == "redis":
        return f"redis://127.0.0.1:{closed_port()}/0"
    return f"amqp://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@127.0.0.1:{closed_port()}//"


def api_with_env(stack: Stack, name: str, **changes: str) -> tuple[ServiceProcess, str]:
    """A second API process of the stack, with `changes` to its environment (and 1 s socket
    timeouts); not started. Returns it and its base URL."""
    port = free_port()
    api = api_process(
        stack.project,
        port=port,
        env={**stack.env, "BROKER_SOCKET_TIMEOUT_SECONDS": "1", **changes},
        log_path=stack.logs / f"{name}.log",
        name=name,
        ready_timeout=30,
    )
    return api, f"http://127.0.0.1:{port}"


@each()
def test_broker_down_is_503_and_leaves_no_record(stack: Stack) -> None:
    api, base_url = api_with_env(
        stack, "api-broker-down", CELERY_BROKER_URL=unreachable_broker_url(stack.variant.broker)
    )
    with api, httpx.Client(base_url=base_url, timeout=15) as client:
        records_before = stack.backends.results.snapshot()
        started = time.monotonic()
        response = client.post("/api/process", json={"data": {"x": 1}})
        elapsed = time.monotonic() - started
        assert response.status_code == 503, f"{response.text}\n{api.describe('API', 30)}"
        detail = response.json().get("detail")
        assert isinstance(detail, str) and "broker" in detail.lower(), response.text
        assert elapsed < 3.5, f"503 took {elapsed:.1f} s"
        assert stack.backends.results.snapshot() == records_before, (
            "the failed submission left a task record"
        )

        ready = client.get("/health/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["broker"] != "ok", ready.text
        assert ready.json()["result_backend"] == "ok", ready.text


@each(lambda v: v.is_default)
def test_fast_paths_off_serve_the_same(stack: Stack, worker: ServiceProcess) -> None:
    """An API with FAST_PATHS=false (Celery's publish in a thread, saferepr, no turn budget)
    beside the stack's: submits, chains, reads and streams work as with the fast paths."""
    api, base_url = api_with_env(stack, "api-fast-paths-off", FAST_PATHS="false")
    with api, httpx.Client(base_url=base_url, timeout=10) as client:

        def final(task_id: str) -> dict[str, Any]:
            body = wait_for_task(
                client, task_id, FINAL_STATUSES, timeout=TASK_TIMEOUT, diagnostics=stack.diagnostics
            )
            assert body["status"] == "success", f"{body}\n{api.describe('API', 30)}"
            return body

        data = {"b": [1, 2], "a": {"x": True}}
        result = final(stack.submit("/api/process", client, json={"data": data}))["result"]
        assert result["checksum"] == canonical_checksum(data), result
        workflow = stack.submit("/api/workflow", client, json={"data": {" Key ": 1}})
        assert final(workflow)["result"]["steps"] == ["validate", "transform", "summarize"]
        report = stack.submit("/api/report/3", client)
        response, events = read_sse(f"{base_url}/api/task/{report}/stream", timeout=30)
        assert response.status_code == 200, response.text
        assert events[-1].event == "complete", events
        stack.expect(client.get(f"/api/task/{uuid.uuid4()}"), 404)


def unreachable_result_backend_url(result_backend: str) -> str:
    if result_backend == "redis":
        return f"redis://127.0.0.1:{closed_port()}/1"
    return f"db+postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nothing"


@each()
def test_result_backend_down_api_starts_and_answers_503(stack: Stack) -> None:
    """Started while its result backend is down, the API serves: live 200, and 503 with a JSON
    detail, within seconds, for readiness, submitting, reading and streaming."""
    api, base_url = api_with_env(
        stack,
        "api-backend-down",
        CELERY_RESULT_BACKEND=unreachable_result_backend_url(stack.variant.result_backend),
    )
    task_id = str(uuid.uuid4())
    requests = [("GET", "/health/ready"), ("POST", "/api/process"), ("GET", f"/api/task/{task_id}")]
    if stack.variant.use_sse:
        requests.append(("GET", f"/api/task/{task_id}/stream"))
    with api, httpx.Client(base_url=base_url, timeout=15) as client:
        for method, path in requests:
            started = time.monotonic()
            body = {"data": {"x": 1}} if method == "POST" else None
            response = client.request(method, path, json=body)
            elapsed = time.monotonic() - started
            assert response.status_code == 503, (
                f"{method} {path}: {response.text}\n{api.describe('API', 30)}"
            )
            assert elapsed < 5, f"{method} {path}: 503 took {elapsed:.1f} s"
            if path == "/health/ready":
                assert response.json()["result_backend"] == "unreachable", response.text
            else:
                assert response.json() == {"detail": "The result backend is unreachable"}


# --------------------------------------------------------------------------------------
# RabbitMQ


@each(lambda v: v.broker == "rabbitmq")
def test_rabbitmq_task_queue_is_quorum_with_a_dead_letter_queue(
    stack: Stack, worker: ServiceProcess
) -> None:
    vhost = stack.backends.rabbitmq_vhost
    response = httpx.get(
        rabbitmq_api_url(f"queues/{vhost}"), auth=(RABBITMQ_USER, RABBITMQ_PASSWORD), timeout=15
    )
    assert response.status_code == 200, response.text
    queues = {q["name"]: q for q in response.json()}
    assert "celery" in queues and "celery.dead-letter" in queues, sorted(queues)
    celery_queue = queues["celery"]
    assert celery_queue.get("type") == "quorum", celery_queue
    arguments = celery_queue.get("arguments", {})
    assert arguments.get("x-delivery-limit") == 5, arguments  # BROKER_DELIVERY_LIMIT
    assert arguments.get("x-dead-letter-exchange") is not None, arguments


# --------------------------------------------------------------------------------------
# Flower


@each(lambda v: v.use_flower)
def test_flower_requires_basic_auth(stack: Stack, worker: ServiceProcess) -> None:
    assert stack.flower is not None
    url = f"{stack.flower_url}/api/workers"
    assert httpx.get(url, timeout=15).status_code == 401
    authed = httpx.get(url, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=15)
    assert authed.status_code == 200, f"{authed.text[:500]}\n{stack.flower.describe('flower', 30)}"
    assert httpx.get(url, auth=(FLOWER_USER, "wrong"), timeout=15).status_code == 401


@each(lambda v: v.use_flower)
def test_flower_reads_the_broker_queues(stack: Stack, worker: ServiceProcess) -> None:
    """Queue lengths and the broker page (with RabbitMQ: through its management API)."""
    assert stack.flower is not None
    auth = (FLOWER_USER, FLOWER_PASSWORD)
    lengths = httpx.get(f"{stack.flower_url}/api/queues/length", auth=auth, timeout=30)
    assert lengths.status_code == 200, (
        f"{lengths.text[:500]}\n{stack.flower.describe('flower', 30)}"
    )
    assert "celery" in {q.get("name") for q in lengths.json()["active_queues"]}, lengths.text
    page = httpx.get(f"{stack.flower_url}/broker", auth=auth, timeout=30)
    assert page.status_code == 200, f"{page.text[:500]}\n{stack.flower.describe('flower', 30)}"
    assert httpx.get(f"{stack.flower_url}/api/queues/length", timeout=15).status_code == 401


# --------------------------------------------------------------------------------------
# Beat: last (its periodic tasks keep writing results)


@each(lambda v: v.use_beat)
def test_beat_runs_the_heartbeat_every_interval(
    stack: Stack, worker: ServiceProcess, beat: ServiceProcess
) -> None:
    """HEARTBEAT_INTERVAL_SECONDS=1: beat sends it, the worker runs it and says so."""
    heartbeats = r"(?s)(?:Heartbeat from \S+.*?){3}"
    try:
        worker.wait_for_log(heartbeats, timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{beat.describe('beat', 30)}") from None
    assert re.search(r"periodic\.heartbeat\[[^\]]+\] succeeded", worker.log_text()), (
        worker.describe("no heartbeat task succeeded")
    )


@each(lambda v: v.result_backend == "postgresql")
def test_beat_purges_expired_results(
    stack: Stack, worker: ServiceProcess, beat: ServiceProcess
) -> None:
    """RESULT_CLEANUP_INTERVAL_SECONDS=1: celery.backend_cleanup deletes an expired row."""
    records = stack.backends.results
    assert isinstance(records, PostgresResultRecords)
    task_id = f"expired-{uuid.uuid4()}"
    records.insert_expired(task_id)
    fresh = stack.submit("/api/process", json={"data": {"fresh": True}})
    stack.expect_success(fresh)
    deadline = time.monotonic() + 30
    while records.has(task_id):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the expired result {task_id} is still there after 30 s\n{stack.diagnostics()}"
            )
        time.sleep(0.5)
    worker.wait_for_log(r"celery\.backend_cleanup\[[^\]]+\] succeeded", timeout=5)
    assert records.has(fresh), "backend_cleanup deleted a result that has not expired"
