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
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.boot import (
    api_process,
    free_port,
    private_redis_server,
    read_sse,
    wait_for_task,
    worker_process,
)
from tests.matrix import DEFAULT_PYTHON
from tests.projects import RenderedProjects
from tests.services import skip_or_fail
from tests.variants import Variant

pytestmark = pytest.mark.boot

OUTAGE_SECONDS = 3.0
TASK_TIMEOUT = 30.0


def test_worker_and_api_outlive_a_redis_outage_during_a_task(
    rendered_projects: RenderedProjects, tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed (Debian: `apt-get install redis-server`)")
    project = rendered_projects.synced(DEFAULT_PYTHON, Variant())
    first_redis = contextlib.ExitStack()  # closed for the outage
    port = first_redis.enter_context(private_redis_server(tmp_path / "redis"))
    env = {
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{port}/1",
        "WEBHOOK_SECRET": uuid.uuid4().hex,
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
            httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10)
        )

        def diagnostics() -> str:
            return f"{api.describe('API', 30)}\n{worker.describe('worker', 60)}"

        report = client.post("/api/report/1")
        assert report.status_code == 202, report.text
        report_id = report.json()["task_id"]
        wait_for_task(
            client, report_id, {"progress"}, timeout=TASK_TIMEOUT, diagnostics=diagnostics
        )
        streamed: dict[str, Any] = {}
        opened = threading.Event()

        def follow_report() -> None:
            streamed["response"], streamed["events"] = read_sse(
                f"http://127.0.0.1:{api_port}/api/task/{report_id}/stream",
                timeout=2 * TASK_TIMEOUT,
                until=frozenset({"complete", "failure", "error"}),
                on_open=lambda _: opened.set(),
            )

        follower = threading.Thread(target=follow_report, daemon=True)
        follower.start()
        assert opened.wait(10), f"the report's stream did not open\n{diagnostics()}"
        time.sleep(0.3)  # subscribed and past its first read

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

        # The report's stream rode out the outage, then ended with the report's result if the
        # worker's retried write came first, or with an error: its record went with the old Redis.
        follower.join(TASK_TIMEOUT)
        assert not follower.is_alive(), f"the report's stream did not end\n{diagnostics()}"
        final = streamed["events"][-1] if streamed["events"] else None
        assert final is not None and final.event in {"complete", "error"}, (
            f"{streamed['events']}\n{diagnostics()}"
        )
        if final.event == "error":
            detail = f"Task {report_id} is no longer known: its record expired or was lost"
            assert json.loads(final.data) == {"detail": detail}
        log = api.log_text()
        assert log.count("Result channel connection lost") == 1, diagnostics()
        assert "Result channel reconnected" in log, diagnostics()
