"""Flower: basic auth, real credentials, its metrics and the broker's queues."""

from __future__ import annotations

import httpx
import pytest

from harness.processes import (
    ServiceProcess,
    free_port,
    run_to_exit,
)
from tests.stack import (
    FLOWER_PASSWORD,
    FLOWER_USER,
    Stack,
    each,
)

pytestmark = pytest.mark.boot


# --------------------------------------------------------------------------------------
# Flower


@each(lambda v: v.use_flower)
def test_flower_requires_basic_auth(stack: Stack, worker: ServiceProcess) -> None:
    assert stack.flower is not None
    url = f"{stack.flower_url}/api/workers"
    assert httpx.get(url, timeout=15).status_code == 401
    authed = httpx.get(url, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=15)
    assert authed.status_code == 200, f"{authed.text[:500]}\n{stack.flower.describe('flower', 30)}"
    assert httpx.get(url, auth=(FLOWER_USER, "wrong"), timeout=15).status_code == 401


@each(lambda v: v.use_flower)
def test_flower_refuses_to_start_without_real_credentials(stack: Stack) -> None:
    """An empty user or password, a placeholder password, or none at all: Flower exits."""
    flower = ["celery", "-A", f"{stack.package}.celery_app", "flower", "--address=127.0.0.1"]
    without = {k: v for k, v in stack.env.items() if k != "FLOWER_BASIC_AUTH"}
    for value in (None, "", ":", "admin:", ":strong-password-0123456789", "admin:change-me"):
        env = without if value is None else {**without, "FLOWER_BASIC_AUTH": value}
        exited = run_to_exit(stack.project, [*flower, f"--port={free_port()}"], env=env, timeout=60)
        assert exited.returncode != 0, (value, exited.output[-2000:])
        assert "FLOWER_BASIC_AUTH" in exited.output, (value, exited.output[-2000:])


@each(lambda v: v.use_flower)
def test_flower_metrics_need_credentials(stack: Stack, worker: ServiceProcess) -> None:
    assert stack.flower is not None
    url = f"{stack.flower_url}/metrics"
    assert httpx.get(url, timeout=15).status_code == 401
    assert httpx.get(url, auth=(FLOWER_USER, "wrong"), timeout=15).status_code == 401
    metrics = httpx.get(url, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=15)
    assert metrics.status_code == 200, (
        f"{metrics.text[:500]}\n{stack.flower.describe('flower', 30)}"
    )
    assert "flower_" in metrics.text, metrics.text[:500]


@each(lambda v: v.use_flower)
def test_flower_reads_the_broker_queues(stack: Stack, worker: ServiceProcess) -> None:
    """Queue lengths and the broker page (with RabbitMQ: through its management API)."""
    assert stack.flower is not None
    auth = (FLOWER_USER, FLOWER_PASSWORD)
    lengths = httpx.get(f"{stack.flower_url}/api/queues/length", auth=auth, timeout=30)
    assert lengths.status_code == 200, (
        f"{lengths.text[:500]}\n{stack.flower.describe('flower', 30)}"
    )
    assert "celery" in {q.get("name") for q in lengths.json()["active_queues"]}, lengths.text
    page = httpx.get(f"{stack.flower_url}/broker", auth=auth, timeout=30)
    assert page.status_code == 200, f"{page.text[:500]}\n{stack.flower.describe('flower', 30)}"
    assert httpx.get(f"{stack.flower_url}/api/queues/length", timeout=15).status_code == 401
