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

from harness.processes import (
    ServiceProcess,
    api_process,
    closed_port,
    free_port,
    run_to_exit,
    worker_process,
)
from harness.rendering import RenderedProject
from harness.services import (
    RABBITMQ_HOST,
    RABBITMQ_MANAGEMENT_PORT,
    RABBITMQ_PASSWORD,
    RABBITMQ_USER,
    rabbitmq_api_url,
)
from harness.sse import SseEvent, follow_like_event_source, read_sse, read_sse_in_background
from tests.boot import (
    BOOT_API_KEY,
    JSON_CONTENT,
    Backends,
    PostgresResultRecords,
    RedisResultRecords,
    SmtpSink,
    WebhookReceiver,
    api_headers,
    publish_raw_task,
    store_task_states,
    variant_backends,
    wait_for_task,
)
from tests.matrix import DEFAULT_PYTHON
from tests.projects import RenderedProjects
from tests.variants import BootVariant, Variant, boot_params

pytestmark = pytest.mark.boot

REPORT_STEPS = 20
REPORT_STEP_DELAY_SECONDS = 0.1  # a report runs 2 s: long enough to be cancelled mid-way
MAX_BODY_BYTES = 1024
MAX_JSON_ITEMS = 50  # small enough to pass in a body under MAX_BODY_BYTES
FLOWER_USER, FLOWER_PASSWORD = "admin", "flower-boot-password-0123456789"
TASK_TIMEOUT = 30.0
CONCURRENT_SUBMITS, CONCURRENT_CLIENTS = 200, 32
# Status polls: routine access-log lines, left out of the API's log tail in failure reports.
STATUS_POLL_LINE = r'"GET /api/task/[^/ ]+ HTTP/1\.1" 200'

FINAL_STATUSES = frozenset({"success", "failure", "revoked"})
# Every POST declares JSON, one without a body too (else 415).
TEXT_PLAIN = {"Content-Type": "text/plain"}
# The origin whose pages may call the booted APIs (CORS_ALLOW_ORIGINS), and one that may not.
ALLOWED_ORIGIN, FOREIGN_ORIGIN = "https://app.example.com", "https://elsewhere.example.net"


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

    @property
    def headers(self) -> dict[str, str]:
        """What every client of the API sends: the API key, if the variant has keys."""
        return api_headers(self.variant)

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
        task id. A POST without a body declares JSON all the same."""
        if not {"json", "content", "data", "files"} & set(kwargs):
            kwargs["headers"] = {**JSON_CONTENT, **kwargs.get("headers", {})}
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
            f"{self.client.base_url}/api/task/{task_id}/stream",
            timeout=timeout,
            headers=self.headers,
            **kwargs,
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
        "CORS_ALLOW_ORIGINS": ALLOWED_ORIGIN,
        "MAX_JSON_ITEMS": str(MAX_JSON_ITEMS),
        "PYTHONUNBUFFERED": "1",
    }
    if variant.has_api_key:
        env["API_KEYS"] = f"another-boot-test-key-0123456789,{BOOT_API_KEY}"
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
            httpx.Client(
                base_url=f"http://127.0.0.1:{api_port}", timeout=10, headers=api_headers(variant)
            )
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
        f"{stack.client.base_url}/api/task/{task_id}/stream", timeout=60, headers=stack.headers
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


def event_sequences(events: list[SseEvent]) -> list[int]:
    """The sequence numbers of the events' ids (`<sequence>-<fingerprint>`)."""
    assert all(e.id is not None and re.fullmatch(r"[0-9]+-[0-9a-f]{16}", e.id) for e in events), (
        events
    )
    return [int(str(e.id).split("-")[0]) for e in events]


@each(lambda v: v.use_sse)
def test_report_stream_followed_like_a_browser(stack: Stack, worker: ServiceProcess) -> None:
    """An EventSource-like client gets the report's events once, then 204 when it reconnects
    (with Last-Event-ID) after the end, and stops."""
    task_id = stack.submit("/api/report/8")
    url = f"{stack.client.base_url}/api/task/{task_id}/stream"
    connections = follow_like_event_source(
        url, timeout=30, max_connections=4, headers=stack.headers
    )
    assert [c.status for c in connections] == [200, 204], f"{connections}\n{stack.diagnostics()}"
    events = connections[0].events
    assert [e.event for e in events[:-1]] == ["progress"] * (len(events) - 1), events
    assert events[-1].event == "complete", events
    assert connections[1].last_event_id == events[-1].id, connections
    assert connections[1].events == [], connections
    assert event_sequences(events) == list(range(1, len(events) + 1)), events
    # The stream opens after the task may have started: early steps can be missed, but
    # what comes is in order and ends at the last step.
    progress = [e.json() for e in events[:-1]]
    assert all(p["task_id"] == task_id for p in progress), progress
    currents = [p["current"] for p in progress]
    assert currents == sorted(set(currents)) and currents[-1] == REPORT_STEPS, currents
    assert {p["total"] for p in progress} == {REPORT_STEPS}, progress
    final = events[-1].json()
    assert final["task_id"] == task_id, final
    assert final["status"] == "success" and final["result"]["user_id"] == 8, final

    # A late subscriber's first request gets the final event, once, then 204.
    late = follow_like_event_source(url, timeout=10, max_connections=4, headers=stack.headers)
    assert [c.status for c in late] == [200, 204], late
    assert [e.event for e in late[0].events] == ["complete"], late
    assert event_sequences(late[0].events) == [1], late  # its own numbering
    assert late[0].events[0].json() == final


@each(lambda v: v.use_sse)
def test_stream_reconnection_goes_on_after_the_last_event_id(stack: Stack) -> None:
    """States written as a worker writes them (pushed through pub/sub on Redis, polled on
    PostgreSQL): a reconnection with Last-Event-ID leaves out the state the client has and
    numbers on."""
    task_id = str(uuid.uuid4())
    url = f"{stack.client.base_url}/api/task/{task_id}/stream"
    store_task_states(stack.project, stack.env, task_id, [("PROGRESS", {"current": 1})])
    _, [seen] = stack.stream(task_id, timeout=10, until=frozenset({"progress"}))
    assert seen.json() == {"current": 1, "task_id": task_id}, seen
    assert event_sequences([seen]) == [1], seen

    # Reconnected while the state is still the one the client has: nothing until it changes.
    stream = read_sse_in_background(
        url,
        timeout=30,
        until=frozenset({"progress"}),
        headers={**stack.headers, "Last-Event-ID": str(seen.id)},
    )
    store_task_states(stack.project, stack.env, task_id, [("PROGRESS", {"current": 2})])
    _, events = stream.result(30, stack.diagnostics)
    assert [(e.event, e.json()) for e in events] == [
        ("progress", {"current": 2, "task_id": task_id})
    ], events
    assert event_sequences(events) == [2], events

    store_task_states(stack.project, stack.env, task_id, [("SUCCESS", {"done": True})])
    # A new client gets the final event, then 204.
    connections = follow_like_event_source(
        url, timeout=30, max_connections=4, headers=stack.headers
    )
    assert [c.status for c in connections] == [200, 204], connections
    # Ours missed the final state: it gets it, numbered after its last event, then 204.
    response, events = read_sse(
        url, timeout=10, headers={**stack.headers, "Last-Event-ID": str(events[0].id)}
    )
    assert response.status_code == 200, response.text
    assert [e.event for e in events] == ["complete"], events
    assert event_sequences(events) == [3], events
    assert events[0].json()["result"] == {"done": True}, events
    reconnected = stack.client.get(url, headers={"Last-Event-ID": str(events[0].id)})
    assert reconnected.status_code == 204 and reconnected.content == b"", reconnected.text


@each(lambda v: v.use_sse)
def test_stream_of_a_task_whose_record_vanishes_ends_with_lost(stack: Stack) -> None:
    """Not `error`, which EventSource's own connection errors are named."""
    task_id = str(uuid.uuid4())
    store_task_states(stack.project, stack.env, task_id, [("PROGRESS", {"current": 1})])
    stream = read_sse_in_background(
        f"{stack.client.base_url}/api/task/{task_id}/stream",
        timeout=30,
        until=frozenset({"lost", "complete", "failure"}),
        headers=stack.headers,
    )
    stack.backends.results.remove(task_id)
    if isinstance(stack.backends.results, RedisResultRecords):
        # Nothing is published when a key goes: the API reads the state again when its
        # pub/sub connection comes back.
        assert stack.backends.results.drop_result_channels() == 1
    _, events = stream.result(30, stack.diagnostics)
    detail = f"Task {task_id} is no longer known: its record expired or was lost"
    assert [(e.event, e.json()) for e in events] == [
        ("progress", {"current": 1, "task_id": task_id}),
        ("lost", {"task_id": task_id, "detail": detail}),
    ], events
    # Without an id: a reconnection goes on after the last state the client received.
    assert events[0].id is not None and events[1].id is None, events


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
def test_a_method_a_path_lacks_is_405_naming_each_it_has(stack: Stack) -> None:
    for method in ("OPTIONS", "PUT"):
        response = stack.client.request(method, f"/api/task/{uuid.uuid4()}")
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == "DELETE, GET", response.headers


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
    ("user-id-not-int", ("POST", "/api/report/abc", {"headers": JSON_CONTENT}), _always),
    ("user-id-below-1", ("POST", "/api/report/0", {"headers": JSON_CONTENT}), _always),
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


JSON = {"content-type": "application/json"}
# Bodies a worker could choke on (the service's default MAX_JSON_DEPTH is 32), as raw JSON
# text: a lone surrogate cannot be encoded by a client's JSON library, only escaped.
UNSAFE_DATA: list[tuple[str, bytes]] = [
    ("surrogate-key", b'{"data": {"\\udaeb": "secret-arg-123"}}'),
    ("surrogate-value", b'{"data": {"key": ["ok", "\\udaeb"]}}'),
    ("too-deep", b'{"data": {"x": ' + b"[" * 40 + b"]" * 40 + b"}}"),
    ("too-many-items", b'{"data": {"x": [' + b",".join([b"0"] * (MAX_JSON_ITEMS + 1)) + b"]}}"),
]
# Every endpoint that takes data, and what else its request needs.
DATA_ENDPOINTS: list[tuple[str, dict[str, Any], Callable[[Variant], bool]]] = [
    ("/api/process", {}, _always),
    ("/api/async-process", {}, _always),
    ("/api/combined", {}, _always),
    ("/api/workflow", {}, _always),
    ("/api/quick-log", {}, _always),
    (
        "/api/task-with-webhook",
        {"params": {"webhook_url": "http://127.0.0.1:9/hook"}},
        lambda v: v.use_webhooks,
    ),
]
BAD_INPUT += [
    (f"{case}{path}", ("POST", path, {"content": body, "headers": JSON, **extra}), applies)
    for case, body in UNSAFE_DATA
    for path, extra, applies in DATA_ENDPOINTS
]
BAD_INPUT.append(
    (
        "email-surrogate-subject",
        (
            "POST",
            "/api/email",
            {
                "content": b'{"to": "a@example.com", "subject": "\\udaeb", "body": "b"}',
                "headers": JSON,
            },
        ),
        lambda v: v.use_email,
    )
)


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
def test_unsafe_data_is_422_saying_what_and_where(stack: Stack) -> None:
    """The 422 names the cause and its place, and echoes nothing of the data."""
    expected = {
        "surrogate-key": ("string_not_utf8", ["body", "data", "\\udaeb"]),
        "surrogate-value": ("string_not_utf8", ["body", "data", "key", 1]),
        "too-deep": ("json_too_deep", ["body", "data", "x", *[0] * 30]),
        "too-many-items": ("json_too_many_items", ["body", "data", "x"]),
    }
    for case, body in UNSAFE_DATA:
        response = stack.client.post("/api/process", content=body, headers=JSON)
        (error,) = stack.expect(response, 422)["detail"]
        assert (error["type"], error["loc"]) == expected[case], (case, error)
        assert error["msg"] and error["input"] is None, (case, error)
        assert "secret-arg-123" not in response.text, response.text
    # Too deep for Python's JSON parser (about 10,000 levels on 3.13), over MAX_BODY_BYTES
    # in a request of its own: refused as too deep, not with a bare 400.
    api, base_url = api_with_env(stack, "api-large-bodies", MAX_BODY_BYTES=str(1024 * 1024))
    deep = b'{"data": {"x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}"
    with api, httpx.Client(base_url=base_url, timeout=15) as client:
        (error,) = stack.expect(client.post("/api/process", content=deep, headers=JSON), 422)[
            "detail"
        ]
        assert (error["type"], error["loc"]) == ("json_too_deep", ["body"]), error


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
# Strangers: API keys, stream tokens, CORS, JSON-only POSTs, secrets that must be real


def _api_requests(variant: Variant, task_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """A request to each /api/ endpoint of the variant, well-formed but for credentials."""
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/process", {"json": {"data": {"x": 1}}}),
        ("POST", "/api/async-process", {"json": {"data": {"x": 1}}}),
        ("POST", "/api/report/1", {"headers": JSON_CONTENT}),
        ("POST", "/api/combined", {"json": {"data": {"x": 1}}}),
        ("POST", "/api/workflow", {"json": {"data": {"x": 1}}}),
        ("POST", "/api/quick-log", {"json": {"data": {"x": 1}}}),
        ("GET", f"/api/task/{task_id}", {}),
        ("DELETE", f"/api/task/{task_id}", {}),
    ]
    if variant.use_email:
        email = {"to": "a@example.com", "subject": "s", "body": "b"}
        requests.append(("POST", "/api/email", {"json": email}))
    if variant.use_webhooks:
        webhook = {"params": {"webhook_url": "http://example.com/hook"}, "json": {"data": {}}}
        requests.append(("POST", "/api/task-with-webhook", webhook))
    if variant.use_sse:
        requests.append(("GET", f"/api/task/{task_id}/stream", {}))
    return requests


@each(lambda v: v.has_api_key)
def test_api_without_a_valid_key_is_401_and_changes_nothing(
    stack: Stack, worker: ServiceProcess
) -> None:
    """No key, a wrong one, a key under another scheme: 401 with WWW-Authenticate: Bearer on
    every /api/ endpoint, nothing queued, read or cancelled. Health stays open, and every key
    of API_KEYS opens the API."""
    task_id = stack.submit("/api/process", json={"data": {"kept": True}})
    stack.expect_success(task_id)
    credentials = {
        "none": {},
        "wrong key": {"Authorization": "Bearer wrong-key-0123456789abcdef"},
        "key with a suffix": {"Authorization": f"Bearer {BOOT_API_KEY}x"},
        "key without scheme": {"Authorization": BOOT_API_KEY},
        "basic scheme": {"Authorization": f"Basic {BOOT_API_KEY}"},
    }
    records_before = stack.backends.results.snapshot()
    failures = []
    with httpx.Client(base_url=stack.client.base_url, timeout=10) as stranger:
        for name, headers in credentials.items():
            for method, path, kwargs in _api_requests(stack.variant, task_id):
                sent = {**kwargs.get("headers", {}), **headers}
                response = stranger.request(method, path, **{**kwargs, "headers": sent})
                if response.status_code != 401:
                    failures.append(f"{name}: {method} {path} -> {response.status_code}")
                elif response.headers.get("www-authenticate") != "Bearer":
                    failures.append(f"{name}: {method} {path}: {response.headers}")
        assert not failures, "\n".join(failures) + "\n" + stack.diagnostics()
        assert stack.backends.results.snapshot() == records_before
        for path in ("/", "/health/live", "/health/ready"):
            stack.expect(stranger.get(path), 200)
        second_key = {"Authorization": "Bearer another-boot-test-key-0123456789"}
        stack.expect(stranger.get(f"/api/task/{task_id}", headers=second_key), 200)
    assert stack.expect(stack.client.get(f"/api/task/{task_id}"), 200)["status"] == "success"


@each(lambda v: not v.has_api_key)
def test_api_without_auth_needs_no_key(stack: Stack, worker: ServiceProcess) -> None:
    assert "authorization" not in stack.client.headers
    accepted = stack.expect(stack.client.post("/api/report/2", headers=JSON_CONTENT), 202)
    task_id = accepted["task_id"]
    if stack.variant.use_sse:
        assert accepted["stream_url"] == f"/api/task/{task_id}/stream", accepted
        _, events = read_sse(f"{stack.client.base_url}{accepted['stream_url']}", timeout=30)
        assert events[-1].event == "complete", events
    else:
        assert "stream_url" not in accepted, accepted
    assert stack.expect_success(task_id)["user_id"] == 2


@each(lambda v: v.has_api_key and v.use_sse)
def test_stream_url_opens_that_tasks_stream_without_a_key(
    stack: Stack, worker: ServiceProcess
) -> None:
    """EventSource sends no headers: the 202's stream_url (a signed token in its query) opens
    the stream by itself. Another task's stream, a tampered or missing token, and any other
    endpoint refuse it."""
    accepted = stack.expect(stack.client.post("/api/report/4", headers=JSON_CONTENT), 202)
    task_id, stream_url = accepted["task_id"], accepted["stream_url"]
    path, _, query = stream_url.partition("?")
    assert path == f"/api/task/{task_id}/stream" and query.startswith("token="), accepted
    base = stack.client.base_url
    response, events = read_sse(f"{base}{stream_url}", timeout=30)
    assert response.status_code == 200, response.text
    assert events[-1].event == "complete", events
    assert events[-1].json()["task_id"] == task_id, events

    other = stack.submit("/api/process", json={"data": {"other": True}})
    expiry, _, signature = query.removeprefix("token=").partition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    refused = {
        "another task": f"/api/task/{other}/stream?{query}",
        "tampered signature": f"{path}?token={expiry}.{flipped}",
        "extended expiry": f"{path}?token={int(expiry) + 3600}.{signature}",
        "no token": path,
        "status read": f"/api/task/{task_id}?{query}",
    }
    for case, url in refused.items():
        response, events = read_sse(f"{base}{url}", timeout=10)
        assert response.status_code == 401, (case, response.status_code, events)
        assert response.headers["www-authenticate"] == "Bearer", case
    cancel = httpx.delete(f"{base}/api/task/{other}?{query}", timeout=10)
    assert cancel.status_code == 401, cancel.text


@each(lambda v: v.has_api_key and v.use_sse)
def test_expired_stream_token_is_401(stack: Stack, worker: ServiceProcess) -> None:
    api, base_url = api_with_env(stack, "api-short-tokens", STREAM_TOKEN_TTL_SECONDS="1")
    with api, httpx.Client(base_url=base_url, timeout=15, headers=stack.headers) as client:
        accepted = stack.expect(client.post("/api/process", json={"data": {"x": 1}}), 202)
        stack.expect_success(accepted["task_id"])
        expiry = int(accepted["stream_url"].partition("token=")[2].partition(".")[0])
        assert expiry <= time.time() + 2, accepted  # 1 s from when it was made
        time.sleep(max(0.0, expiry + 1 - time.time()))
        response, _ = read_sse(f"{base_url}{accepted['stream_url']}", timeout=10)
        assert response.status_code == 401, response.text
        assert "expired" in response.json()["detail"], response.text
        # The same task, with the key: the stream answers.
        response, _ = read_sse(
            f"{base_url}/api/task/{accepted['task_id']}/stream", timeout=10, headers=stack.headers
        )
        assert response.status_code == 200, response.text


@each()
def test_cors_preflight_and_origins(stack: Stack) -> None:
    """CORS_ALLOW_ORIGINS=ALLOWED_ORIGIN: its preflight passes (with the headers the API
    needs), another origin's is refused, and answers name the allowed origin only."""
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    with httpx.Client(base_url=stack.client.base_url, timeout=10) as browser:
        allowed = browser.options("/api/process", headers={"Origin": ALLOWED_ORIGIN, **preflight})
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "POST" in allowed.headers["access-control-allow-methods"]
        allowed_headers = allowed.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed_headers, allowed.headers
        assert "content-type" in allowed_headers, allowed.headers
        refused = browser.options("/api/process", headers={"Origin": FOREIGN_ORIGIN, **preflight})
        assert refused.status_code == 400, refused.text
        assert "access-control-allow-origin" not in refused.headers
    unknown = f"/api/task/{uuid.uuid4()}"
    answer = stack.client.get(unknown, headers={"Origin": ALLOWED_ORIGIN})
    stack.expect(answer, 404)
    assert answer.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    foreign = stack.client.get(unknown, headers={"Origin": FOREIGN_ORIGIN})
    stack.expect(foreign, 404)
    assert "access-control-allow-origin" not in foreign.headers


@each()
def test_posts_that_are_not_json_are_415_and_queue_nothing(stack: Stack) -> None:
    """What a foreign page can send without a preflight (a form, text/plain, no body at all)
    queues nothing: 415, with the key too. Without the key (as a foreign page sends it), 401
    or 415."""
    simple_posts: list[tuple[str, dict[str, Any]]] = [
        (
            "/api/process",
            {"content": b'{"data": {"x": 1}}', "headers": TEXT_PLAIN},
        ),
        ("/api/process", {"data": {"data": "x"}}),
        ("/api/process", {"files": {"data": ("data.json", b'{"x": 1}')}}),
        (
            "/api/workflow",
            {"content": b'{"data": {"x": 1}}', "headers": TEXT_PLAIN},
        ),
        ("/api/report/1", {}),
        ("/api/report/1", {"headers": TEXT_PLAIN}),
    ]
    records_before = stack.backends.results.snapshot()
    failures = []
    with httpx.Client(base_url=stack.client.base_url, timeout=10) as stranger:
        for path, kwargs in simple_posts:
            with_origin = {**kwargs.get("headers", {}), "Origin": FOREIGN_ORIGIN}
            keyed = stack.client.post(path, **{**kwargs, "headers": with_origin})
            if keyed.status_code != 415:
                failures.append(f"{path} {kwargs}: {keyed.status_code} {keyed.text[:200]}")
            anonymous = stranger.post(path, **{**kwargs, "headers": with_origin})
            if anonymous.status_code not in ({401, 415} if stack.variant.has_api_key else {415}):
                failures.append(f"{path} {kwargs} without key: {anonymous.status_code}")
    assert not failures, "\n".join(failures) + "\n" + stack.diagnostics()
    assert stack.backends.results.snapshot() == records_before
    schema = stack.expect(stack.client.get("/openapi.json"), 200)
    assert "415" in schema["paths"]["/api/process"]["post"]["responses"]


def _placeholder_secrets(variant: Variant) -> list[tuple[str, str]]:
    cases: list[tuple[str, str]] = []
    if variant.has_api_key:
        cases += [
            ("API_KEYS", ""),
            ("API_KEYS", "change-me"),
            ("API_KEYS", "change-me-to-a-long-random-string"),
            ("API_KEYS", f"{BOOT_API_KEY},secret"),
        ]
    if variant.use_webhooks:
        cases += [("WEBHOOK_SECRET", "change-me-to-a-long-random-string"), ("WEBHOOK_SECRET", "")]
    return cases


@each(lambda v: bool(_placeholder_secrets(v)))
def test_service_refuses_to_start_with_placeholder_secrets(stack: Stack) -> None:
    for name, value in _placeholder_secrets(stack.variant):
        port = free_port()
        exited = run_to_exit(
            stack.project,
            ["uvicorn", f"{stack.package}.main:app", "--host", "127.0.0.1", "--port", str(port)],
            env={**stack.env, name: value},
            timeout=60,
        )
        assert exited.returncode != 0, (name, value, exited.output[-2000:])
        assert name in exited.output, (name, value, exited.output[-2000:])
    # The worker reads the same settings.
    name, value = _placeholder_secrets(stack.variant)[1]
    exited = run_to_exit(
        stack.project,
        ["celery", "-A", f"{stack.package}.celery_app", "worker", "--pool=solo"],
        env={**stack.env, name: value},
        timeout=60,
    )
    assert exited.returncode != 0, exited.output[-2000:]
    assert name in exited.output, exited.output[-2000:]


# --------------------------------------------------------------------------------------
# Messages past the API: poison, and values the API would refuse


def _wait_for_record(stack: Stack, task_id: str, timeout: float = TASK_TIMEOUT) -> None:
    """Wait until the task has a record: one published past the API has none until a
    worker stores its state."""
    deadline = time.monotonic() + timeout
    while stack.client.get(f"/api/task/{task_id}").status_code == 404:
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} unknown after {timeout} s\n{stack.diagnostics()}")
        time.sleep(0.1)


def _dead_lettered_ids(stack: Stack, expected: set[str], timeout: float = TASK_TIMEOUT) -> set[str]:
    """The task ids found in the dead-letter queue (looked at, left there), once `expected`
    are all there or after `timeout`."""
    url = rabbitmq_api_url(f"queues/{stack.backends.rabbitmq_vhost}/celery.dead-letter/get")
    request = {"count": 100, "ackmode": "reject_requeue_true", "encoding": "auto", "truncate": 1}
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.post(
            url, json=request, auth=(RABBITMQ_USER, RABBITMQ_PASSWORD), timeout=15
        )
        assert response.status_code == 200, response.text
        found = {m["properties"].get("headers", {}).get("id") for m in response.json()}
        if expected <= found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


# 5,000 levels decode but cannot be pickled for the pool; 20,000 cannot even be decoded.
POISON_DEPTHS = (5_000, 20_000)


@each()
def test_poison_messages_fail_and_the_worker_goes_on(stack: Stack, worker: ServiceProcess) -> None:
    """Task messages nested too deep for the worker, published past the API (which refuses
    them), end as recorded failures (with RabbitMQ, in the dead-letter queue as well); the
    same worker then runs a normal task."""
    task = f"{stack.package}.tasks.processing.process_data"
    poison = [
        publish_raw_task(
            stack.project,
            stack.env,
            task=task,
            args_json='[{"x": ' + "[" * depth + "]" * depth + "}]",
        )
        for depth in POISON_DEPTHS
    ]
    for task_id in poison:
        _wait_for_record(stack, task_id)
        body = stack.wait_for_task(task_id)
        assert body["status"] == "failure", f"{body}\n{stack.diagnostics()}"
        assert body["error"].startswith("PoisonMessageError: "), body
    data = {"after": "poison"}
    assert stack.expect_success(stack.submit("/api/process", json={"data": data}))["keys"] == [
        "after"
    ]
    assert worker.running, worker.describe("the worker stopped")
    assert "Unrecoverable error" not in worker.log_text(), worker.describe("the worker failed")
    if stack.variant.broker == "rabbitmq":
        found = _dead_lettered_ids(stack, set(poison))
        assert set(poison) <= found, f"not dead-lettered: {set(poison) - found}"


@each()
def test_stored_surrogates_and_leaky_errors_read_back_safely(
    stack: Stack, worker: ServiceProcess
) -> None:
    """What the API refuses can still come from another producer: a lone surrogate in the
    data. A task failing on it stores its exception without the argument it carried nor a
    traceback; one returning it stores it. Status and stream answer both."""
    secret = f"secret-arg-{uuid.uuid4().hex[:8]}"
    args_json = json.dumps([{"\udaeb": secret}])  # ASCII: the surrogate escaped
    failing = publish_raw_task(
        stack.project,
        stack.env,
        task=f"{stack.package}.tasks.processing.process_data",  # its checksum encodes the data
        args_json=args_json,
    )
    echoing = publish_raw_task(
        stack.project,
        stack.env,
        task=f"{stack.package}.tasks.processing.validate_payload",  # returns the data
        args_json=args_json,
    )
    _wait_for_record(stack, failing)
    seen: list[str] = []
    body = stack.wait_for_task(failing, seen=seen)
    assert body["status"] == "failure", f"{body}\n{stack.diagnostics()}"
    assert body["error"].startswith("UnicodeEncodeError: "), body
    assert "\\udaeb" in body["error"], body  # escaped: it says which character
    for raw in seen:
        assert secret not in raw and "Traceback" not in raw, raw
    stored = stack.backends.results.stored(failing)
    assert stored and secret not in stored and "Traceback" not in stored, stored

    _wait_for_record(stack, echoing)
    result = stack.expect_success(echoing)
    assert result["data"] == {"\\udaeb": secret}, result

    if stack.variant.use_sse:
        for task_id, final in ((failing, "failure"), (echoing, "complete")):
            response, events = stack.stream(task_id, timeout=TASK_TIMEOUT)
            assert response.status_code == 200, response.text
            assert [e.event for e in events] == [final], events
            assert events[-1].json()["task_id"] == task_id, events


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
    with api, httpx.Client(base_url=base_url, timeout=15, headers=stack.headers) as client:
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
    with api, httpx.Client(base_url=base_url, headers=stack.headers, timeout=10) as client:

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
        response, events = read_sse(
            f"{base_url}/api/task/{report}/stream", timeout=30, headers=stack.headers
        )
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
    with api, httpx.Client(base_url=base_url, timeout=15, headers=stack.headers) as client:
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


@each(lambda v: v.result_backend == "postgresql")
def test_missing_postgresql_database_is_a_named_cause(stack: Stack) -> None:
    """Readiness names the missing database, in its body and once in the log, and shows
    neither the URL's password nor the server's address."""
    database, password = f"missing_{uuid.uuid4().hex[:12]}", f"pw-{uuid.uuid4().hex}"
    url = stack.backends.result_backend_url
    missing = re.sub(r"//([^@/]*)@", rf"//\1:{password}@", url).rsplit("/", 1)[0]
    api, base_url = api_with_env(
        stack, "api-missing-database", CELERY_RESULT_BACKEND=f"{missing}/{database}"
    )
    with api, httpx.Client(base_url=base_url, timeout=15) as client:
        bodies = [client.get("/health/ready") for _ in range(3)]
        log = api.log_text()
    cause = f'result backend: database "{database}" does not exist'
    for response in bodies:
        assert response.status_code == 503, f"{response.text}\n{api.describe('API', 30)}"
        assert response.json() == {
            "status": "unavailable",
            "broker": "ok",
            "result_backend": "unreachable",
            "detail": cause,
        }, response.text
    warning = f'Readiness: the result backend is unreachable: database "{database}" does not exist'
    assert log.count(warning) == 1, api.describe("API", 30)  # when it appears, not per probe
    assert password not in log and "127.0.0.1" not in bodies[0].text, bodies[0].text


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
def test_flower_refuses_to_start_without_real_credentials(stack: Stack) -> None:
    """An empty user or password, a placeholder password, or none at all: Flower exits."""
    flower = ["celery", "-A", f"{stack.package}.celery_app", "flower", "--address=127.0.0.1"]
    without = {k: v for k, v in stack.env.items() if k != "FLOWER_BASIC_AUTH"}
    for value in (None, "", ":", "admin:", ":strong-password-0123456789", "admin:change-me"):
        env = without if value is None else {**without, "FLOWER_BASIC_AUTH": value}
        exited = run_to_exit(stack.project, [*flower, f"--port={free_port()}"], env=env, timeout=60)
        assert exited.returncode != 0, (value, exited.output[-2000:])
        assert "FLOWER_BASIC_AUTH" in exited.output, (value, exited.output[-2000:])


@each(lambda v: v.use_flower)
def test_flower_metrics_need_credentials(stack: Stack, worker: ServiceProcess) -> None:
    assert stack.flower is not None
    url = f"{stack.flower_url}/metrics"
    assert httpx.get(url, timeout=15).status_code == 401
    assert httpx.get(url, auth=(FLOWER_USER, "wrong"), timeout=15).status_code == 401
    metrics = httpx.get(url, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=15)
    assert metrics.status_code == 200, (
        f"{metrics.text[:500]}\n{stack.flower.describe('flower', 30)}"
    )
    assert "flower_" in metrics.text, metrics.text[:500]


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
