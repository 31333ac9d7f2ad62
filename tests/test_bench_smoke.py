"""The benchmark keeps working: `python -m bench --smoke` completes and writes its results.

Pass/fail never depends on timings: only on every phase completing for each of the four
contenders, every SSE stream of the service (with and without its fast paths) getting every
progress update, and every stream of every app its final event (the benchmark itself exits
non-zero otherwise).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.rendering import TEMPLATE_ROOT
from harness.services import require_redis, skip_or_fail
from tests.projects import require_python

pytestmark = [pytest.mark.boot, pytest.mark.xdist_group("bench-smoke")]


def test_benchmark_smoke_run_completes(tmp_path: Path) -> None:
    require_python("3.13")  # the default python_version, which the benchmark renders
    if shutil.which("wrk") is None:
        skip_or_fail("wrk is not installed (Debian: `apt-get install wrk`); .ci/run installs it")
    if shutil.which("redis-server") is None:
        require_redis()  # without a redis-server binary the benchmark uses the machine's Redis
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=TEMPLATE_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert result.returncode == 0, f"python -m bench --smoke failed:\n{output}"
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert results["problems"] == [], output
    assert (tmp_path / "smoke.md").read_text().startswith("## Benchmark results"), output
    contenders = ("ours", "ours-off", "careful", "usual")
    for kind in ("root", "enqueue", "status", "latency"):
        assert all(results["figures"][kind][label] for label in contenders), (kind, output)
    fanout = results["figures"]["fanout"]
    assert fanout, output
    for by_label in fanout.values():
        assert all(by_label[label] for label in contenders), output
        for run in (*by_label["ours"], *by_label["ours-off"]):
            assert run["updates_delivered"] == run["updates_expected"], run
