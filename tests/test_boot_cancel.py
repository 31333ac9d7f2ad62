"""Cancelling a running task, unknown task ids (404), methods a path lacks (405), and
finished tasks (409).
"""

from __future__ import annotations

import time
import uuid

import pytest

from harness.processes import (
    ServiceProcess,
)
from tests.stack import (
    FINAL_STATUSES,
    REPORT_STEP_DELAY_SECONDS,
    REPORT_STEPS,
    Stack,
    each,
)

pytestmark = pytest.mark.boot


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
