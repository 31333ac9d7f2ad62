"""The broker or the result backend down, or a PostgreSQL database missing: the API answers
503 and names the cause, and leaves no record.
"""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from harness.processes import (
    closed_port,
)
from harness.services import (
    RABBITMQ_PASSWORD,
    RABBITMQ_USER,
)
from tests.stack import (
    Stack,
    api_with_env,
    each,
)

pytestmark = pytest.mark.boot


# --------------------------------------------------------------------------------------
# Broker down


def unreachable_broker_url(broker: str) -> str:
    if broker == "redis":
        return f"redis://127.0.0.1:{closed_port()}/0"
    return f"amqp://{RABBITMQ_USER}:{RABBITMQ_PASSWORD}@127.0.0.1:{closed_port()}//"


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
