"""Report streams, followed as a browser's EventSource does: event ids, Last-Event-ID,
204 after the final event, `lost` when the record vanishes.
"""

from __future__ import annotations

import re
import uuid

import pytest

from harness.processes import (
    ServiceProcess,
)
from harness.sse import SseEvent, follow_like_event_source, read_sse, read_sse_in_background
from tests.records import RedisResultRecords, store_task_states
from tests.stack import (
    REPORT_STEPS,
    Stack,
    each,
)

pytestmark = pytest.mark.boot


# --------------------------------------------------------------------------------------
# Streams


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
