"""Bad input: refused with 413, 415 or 422 and no record left; and messages published past
the API (poison, values the API would refuse) that fail without stopping the worker.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from harness.processes import (
    ServiceProcess,
)
from harness.services import (
    RABBITMQ_PASSWORD,
    RABBITMQ_USER,
    rabbitmq_api_url,
)
from tests.boot import JSON_CONTENT, publish_raw_task
from tests.stack import (
    MAX_BODY_BYTES,
    MAX_JSON_ITEMS,
    TASK_TIMEOUT,
    Stack,
    api_with_env,
    each,
)
from tests.variants import Variant

pytestmark = pytest.mark.boot


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
