"""A Redis outage while a task runs: the API answers 503 (submitting, reading, streaming,
cancelling), a stream opened before it ends with a final event, and the worker and the API
carry on once Redis is back.

The default variant (Redis as broker and result backend) on a `redis-server` of its own, so
that the test can stop it and start it again on the same port: the API, one worker, a report
task running (2 s) when Redis stops and finishing during the outage.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest

from harness.processes import api_process, free_port, private_redis_server, worker_process
from harness.services import skip_or_fail
from harness.sse import read_sse_in_background
from tests.boot import BOOT_API_KEY, api_headers, wait_for_task
from tests.matrix import DEFAULT_PYTHON
from tests.projects import RenderedProjects
from tests.variants import Variant

pytestmark = pytest.mark.boot

OUTAGE_SECONDS = 3.0
TASK_TIMEOUT = 30.0
FINAL = frozenset({"success", "failure", "revoked"})


def test_worker_and_api_outlive_a_redis_outage_during_a_task(
    rendered_projects: RenderedProjects, tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed (Debian: `apt-get install redis-server`)")
    variant = Variant()
    project = rendered_projects.synced(DEFAULT_PYTHON, variant)
    first_redis = contextlib.ExitStack()  # closed for the outage
    port = first_redis.enter_context(private_redis_server(tmp_path / "redis"))
    env = {
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{port}/1",
        "WEBHOOK_SECRET": uuid.uuid4().hex,
        "API_KEYS": BOOT_API_KEY,
        "REPORT_STEPS": "20",
        "REPORT_STEP_DELAY_SECONDS": "0.1",
        "BROKER_SOCKET_TIMEOUT_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    api_port = free_port()
    api = api_process(project, port=api_port, env=env, log_path=tmp_path / "api.log")
    worker = worker_process(project, env=env, log_path=tmp_path / "worker.log")
    with contextlib.ExitStack() as stack:
        stack.push(first_redis)
        stack.enter_context(api)
        stack.enter_context(worker)
        client = stack.enter_context(
            httpx.Client(
                base_url=f"http://127.0.0.1:{api_port}", timeout=10, headers=api_headers(variant)
            )
        )

        def diagnostics() -> str:
            return f"{api.describe('API', 30)}\n{worker.describe('worker', 60)}"

        report = client.post("/api/report/1", headers={"Content-Type": "application/json"})
        assert report.status_code == 202, report.text
        report_id = report.json()["task_id"]
        wait_for_task(
            client, report_id, {"progress"}, timeout=TASK_TIMEOUT, diagnostics=diagnostics
        )
        report_stream = read_sse_in_background(
            f"http://127.0.0.1:{api_port}/api/task/{report_id}/stream",
            timeout=2 * TASK_TIMEOUT,
            until=frozenset({"complete", "failure", "lost"}),
            headers=api_headers(variant),
        )

        first_redis.close()  # Redis stops, the report still running
        refused = client.post("/api/process", json={"data": {"during": "outage"}})
        assert refused.status_code == 503, f"{refused.text}\n{diagnostics()}"
        assert "unreachable" in refused.json()["detail"], refused.text
        for method, path in (("GET", ""), ("GET", "/stream"), ("DELETE", "")):
            unread = client.request(method, f"/api/task/{report_id}{path}")
            assert unread.status_code == 503, f"{method} {path}: {unread.text}\n{diagnostics()}"
            assert unread.json() == {"detail": "The result backend is unreachable"}
        time.sleep(OUTAGE_SECONDS)  # the report finishes while Redis is down
        assert worker.running, f"the worker exited during the outage\n{diagnostics()}"

        stack.enter_context(private_redis_server(tmp_path / "redis", port=port))
        # The restarted Redis holds nothing: the worker must reconnect and take new tasks.
        deadline = time.monotonic() + TASK_TIMEOUT
        while True:
            accepted = client.post("/api/process", json={"data": {"after": "outage"}})
            if accepted.status_code == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert accepted.status_code == 202, f"{accepted.text}\n{diagnostics()}"
        task_id = accepted.json()["task_id"]
        body = wait_for_task(
            client, task_id, {"success", "failure"}, timeout=TASK_TIMEOUT, diagnostics=diagnostics
        )
        assert body["status"] == "success", f"{body}\n{diagnostics()}"
        assert worker.running, f"the worker exited after the outage\n{diagnostics()}"

        # The report's stream rode out the outage and ends with a final event, never silently:
        # the report's result, or `lost` if its record went with the old Redis. It may also
        # still follow the report: cancelled on the lost connection, the report is recorded as
        # a retry (run after default_retry_delay) once the worker reaches the new Redis.
        report_now = client.get(f"/api/task/{report_id}")
        unfinished = report_now.status_code == 200 and report_now.json()["status"] not in FINAL
        if report_stream.outcome.done() or not unfinished:
            _, events = report_stream.result(TASK_TIMEOUT, diagnostics)
            final = events[-1] if events else None
            assert final is not None and final.event in {"complete", "failure", "lost"}, (
                f"{events}\n{report_now.text}\n{diagnostics()}"
            )
            if final.event == "lost":
                detail = f"Task {report_id} is no longer known: its record expired or was lost"
                assert json.loads(final.data) == {"task_id": report_id, "detail": detail}
        log = api.log_text()
        assert log.count("Result channel connection lost") == 1, diagnostics()
        assert "Result channel reconnected" in log, diagnostics()
