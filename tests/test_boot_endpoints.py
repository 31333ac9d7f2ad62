"""The booted variants' endpoints, each task to its final result.

First, before any worker runs: a task reads queued until one does. Then health, the
variant's endpoints (and 404 for those it has not), every task kind, email, webhooks, 200
concurrent submits, background log lines, and the same API with FAST_PATHS=false.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from harness.processes import (
    ServiceProcess,
)
from harness.sse import read_sse, read_sse_in_background
from tests.boot import wait_for_task
from tests.stack import (
    FINAL_STATUSES,
    REPORT_STEPS,
    TASK_TIMEOUT,
    Stack,
    api_with_env,
    canonical_checksum,
    each,
)
from tests.variants import Variant

pytestmark = pytest.mark.boot

CONCURRENT_SUBMITS, CONCURRENT_CLIENTS = 200, 32


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
