"""Helpers the boot tests use to talk to a booted service's API and broker.

(Processes, ports and Redis servers: `harness/processes.py`; server-sent events:
`harness/sse.py`; the SMTP sink and webhook receiver: `tests/receivers.py`; a variant's
backends and result records: `tests/records.py`; a TCP proxy: `tests/proxy.py`.)

- `BOOT_API_KEY` / `api_headers(variant)`: the API key booted services accept, and the
  headers that send it (none with api_auth=none); `JSON_CONTENT`, what every POST declares.
- `wait_for_task()`: poll a task's status until it is one of some states.
- `publish_raw_task()`: a task message published past the API, its arguments as given.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

import httpx

from harness.rendering import RenderedProject, project_env
from tests.variants import Variant

# The key the booted services of api_auth=api_key variants accept (their API_KEYS).
BOOT_API_KEY = "boot-test-api-key-0123456789abcdef"


# Every POST declares JSON, bodiless ones too (the service answers 415 otherwise).
JSON_CONTENT = {"Content-Type": "application/json"}


def api_headers(variant: Variant) -> dict[str, str]:
    """The headers a client of the variant's API sends: its key, if the variant has keys."""
    return {"Authorization": f"Bearer {BOOT_API_KEY}"} if variant.has_api_key else {}


# --------------------------------------------------------------------------------------
# Task status

TASK_STATUS_FIELDS = frozenset({"task_id", "status", "result", "progress", "error"})


def wait_for_task(
    client: httpx.Client,
    task_id: str,
    until: Collection[str],
    *,
    timeout: float,
    diagnostics: Callable[[], str],
    seen: list[str] | None = None,
) -> dict[str, Any]:
    """Poll GET /api/task/{id} until its status is in `until`; every raw body read is
    appended to `seen`. Failures carry `diagnostics()` (the services' log tails)."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/api/task/{task_id}")
        if seen is not None:
            seen.append(response.text)
        assert response.status_code == 200, (
            f"GET {response.request.url} -> {response.status_code}, expected 200: "
            f"{response.text[:1000]}\n{diagnostics()}"
        )
        body: dict[str, Any] = response.json()
        assert set(body) == TASK_STATUS_FIELDS, body
        if body["status"] in until:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(
                f"task {task_id} still {body['status']!r} after {timeout} s "
                f"(waiting for {sorted(until)}): {body}\n{diagnostics()}"
            )
        time.sleep(0.05)


# --------------------------------------------------------------------------------------
# Task messages from another producer

# Run in the rendered project: its Celery app builds the message (headers, queue, exchange),
# and the arguments go in as JSON text, never parsed nor encoded here, so any depth and any
# escape (a lone surrogate) reaches the worker as written.
_PUBLISH_RAW_TASK = """
import json, sys
from {package}.celery_app import celery_app

task, task_id, args_json = sys.argv[1], sys.argv[2], sys.stdin.read()
message = celery_app.amqp.as_task_v2(task_id, task, args=(), kwargs={{}})
embed = message.body[2]
body = "[" + args_json + ", {{}}, " + json.dumps(embed) + "]"
queue = celery_app.amqp.queues[celery_app.conf.task_default_queue]
with celery_app.producer_or_acquire() as producer:
    producer.publish(
        body.encode(),
        exchange=queue.exchange,
        routing_key=queue.routing_key,
        declare=[queue],
        content_type="application/json",
        content_encoding="utf-8",
        headers=message.headers,
        **message.properties,
    )
"""


def publish_raw_task(
    project: RenderedProject,
    env: dict[str, str],
    *,
    task: str,
    args_json: str,
    timeout: float = 60,
) -> str:
    """Publish a task message whose arguments are the JSON text `args_json`, as another
    producer could, past the API (no queued record, no input checks); return its id."""
    task_id = str(uuid.uuid4())
    code = _PUBLISH_RAW_TASK.format(package=project.package_name)
    completed = subprocess.run(
        ["uv", "run", "--frozen", "--no-sync", "python", "-c", code, task, task_id],
        cwd=project.path,
        env=project_env(env),
        input=args_json.encode(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, (
        f"publishing {task} failed: {completed.stderr.decode(errors='replace')[-2000:]}"
    )
    return task_id
