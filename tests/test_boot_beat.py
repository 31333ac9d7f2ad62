"""Beat, last of a variant's tests (its periodic tasks keep writing results): the heartbeat
runs every interval and PostgreSQL's expired results are purged.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from harness.processes import (
    ServiceProcess,
)
from tests.records import PostgresResultRecords
from tests.stack import (
    Stack,
    each,
)

pytestmark = pytest.mark.boot


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
