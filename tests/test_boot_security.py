"""Strangers: API keys, stream tokens, CORS, JSON-only POSTs, secrets that must be real."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from harness.processes import (
    ServiceProcess,
    free_port,
    run_to_exit,
)
from harness.sse import read_sse
from tests.boot import BOOT_API_KEY, JSON_CONTENT
from tests.stack import (
    ALLOWED_ORIGIN,
    FOREIGN_ORIGIN,
    Stack,
    api_with_env,
    each,
)
from tests.variants import Variant

pytestmark = pytest.mark.boot

# Every POST declares JSON, one without a body too (else 415).
TEXT_PLAIN = {"Content-Type": "text/plain"}


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
