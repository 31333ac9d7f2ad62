"""Outages the service rides through, on real services:

- a broker or result backend that freezes on an open connection (a TCP proxy in front of it,
  stopped with SIGSTOP): submits and status reads answer 503 within a bound set by
  BROKER_SOCKET_TIMEOUT_SECONDS, and the service works again once the peer thaws;
- a result backend that goes away for longer than Celery's default retries last while
  tasks run: no task is lost, each ends in success once the backend is back, and the worker
  logs the outage in a few lines, not a traceback per retry;
- a worker killed with SIGKILL mid-task (Redis broker): the task is delivered again and
  completes within the bound the README states.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from harness.processes import api_process, free_port, private_redis_server, worker_process
from harness.services import postgres_database, rabbitmq_vhost, skip_or_fail
from tests.boot import BOOT_API_KEY, JSON_CONTENT, api_headers, wait_for_task
from tests.matrix import DEFAULT_PYTHON
from tests.projects import RenderedProjects
from tests.proxy import TcpProxy
from tests.variants import BOOT_VARIANTS, Variant

pytestmark = pytest.mark.boot

SOCKET_TIMEOUT = 2.0
# "A 503 within about twice the socket timeout": one timed-out call, one timed-out reconnect.
FROZEN_PEER_BOUND = 2 * SOCKET_TIMEOUT + 3.0
TASK_TIMEOUT = 60.0
# The README's bound: an abandoned task is delivered again within the visibility timeout plus
# this sweep interval.
REDELIVERY_SWEEP_SECONDS = 5

RABBITMQ_POSTGRESQL = next(
    b.variant
    for b in BOOT_VARIANTS
    if (b.variant.broker, b.variant.result_backend) == ("rabbitmq", "postgresql")
)


def service_env(urls: dict[str, str]) -> dict[str, str]:
    """The API's and the worker's environment: the broker and backend, and real secrets."""
    return {
        "CELERY_BROKER_URL": urls["broker"],
        "CELERY_RESULT_BACKEND": urls["result_backend"],
        "WEBHOOK_SECRET": uuid.uuid4().hex,
        "API_KEYS": BOOT_API_KEY,
    }


def api_client(port: int, variant: Variant, timeout: float) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=timeout, headers=api_headers(variant)
    )


def through_proxy(url: str, proxy: TcpProxy) -> str:
    """`url` with its port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] if parts.port else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{netloc}:{proxy.port}"))


def require_redis_server() -> None:
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server is not installed (Debian: `apt-get install redis-server`)")


@contextlib.contextmanager
def backend_urls(variant: Variant, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The variant's broker and result backend URLs ("broker", "result_backend"): Redis on
    a private redis-server (database 0 and 1), RabbitMQ and PostgreSQL as variant_backends
    makes them."""
    with contextlib.ExitStack() as stack:
        redis_port = None
        if variant.uses_redis:
            require_redis_server()
            redis_port = stack.enter_context(private_redis_server(tmp_path / "redis"))
        urls = {}
        if variant.broker == "redis":
            urls["broker"] = f"redis://127.0.0.1:{redis_port}/0"
        else:
            urls["broker"] = stack.enter_context(rabbitmq_vhost())
        if variant.result_backend == "redis":
            urls["result_backend"] = f"redis://127.0.0.1:{redis_port}/1"
        else:
            url = stack.enter_context(postgres_database())
            urls["result_backend"] = url.replace("postgresql://", "db+postgresql+psycopg://", 1)
        yield urls


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


@pytest.mark.parametrize(
    ("variant", "peer"),
    [
        pytest.param(Variant(), "broker", id="redis-broker"),
        pytest.param(Variant(), "result_backend", id="redis-result_backend"),
        pytest.param(RABBITMQ_POSTGRESQL, "broker", id="rabbitmq-broker"),
        pytest.param(RABBITMQ_POSTGRESQL, "result_backend", id="postgresql-result_backend"),
    ],
)
def test_frozen_peer_gives_503_within_the_bound_and_the_service_recovers(
    rendered_projects: RenderedProjects, tmp_path: Path, variant: Variant, peer: str
) -> None:
    project = rendered_projects.synced(DEFAULT_PYTHON, variant)
    with contextlib.ExitStack() as stack:
        urls = stack.enter_context(backend_urls(variant, tmp_path))
        target_port = urlsplit(urls[peer]).port
        assert target_port is not None, urls[peer]
        proxy = stack.enter_context(TcpProxy(target_port))
        urls[peer] = through_proxy(urls[peer], proxy)
        env = {
            **service_env(urls),
            "BROKER_SOCKET_TIMEOUT_SECONDS": str(SOCKET_TIMEOUT),
        }
        api_port = free_port()
        api = stack.enter_context(
            api_process(project, port=api_port, env=env, log_path=tmp_path / "api.log")
        )
        client = stack.enter_context(api_client(api_port, variant, timeout=300))

        def submit() -> httpx.Response:
            return client.post("/api/process", json={"data": {"frozen": peer}})

        # Open the pooled connections through the proxy first: it is those that freeze.
        for _ in range(3):
            accepted = submit()
            assert accepted.status_code == 202, f"{accepted.text}\n{api.describe('API')}"
        task_id = accepted.json()["task_id"]
        assert client.get(f"/api/task/{task_id}").status_code == 200

        proxy.freeze()
        try:
            refused, seconds = timed(submit)
            assert refused.status_code == 503, f"{refused.text}\n{api.describe('API')}"
            assert seconds < FROZEN_PEER_BOUND, f"503 after {seconds:.1f} s"
            print(
                f"frozen {peer} ({variant.broker}/{variant.result_backend}): 503 in {seconds:.2f} s"
            )
            if peer == "result_backend":
                unread, seconds = timed(lambda: client.get(f"/api/task/{task_id}"))
                assert unread.status_code == 503, f"{unread.text}\n{api.describe('API')}"
                assert seconds < FROZEN_PEER_BOUND, f"status read: 503 after {seconds:.1f} s"
                print(f"frozen {peer}: status read 503 in {seconds:.2f} s")
        finally:
            proxy.thaw()

        # Thawed, the next submit succeeds: no connection stays poisoned.
        deadline = time.monotonic() + 30
        for _ in range(100):
            accepted = submit()
            if accepted.status_code == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert accepted.status_code == 202, f"{accepted.text}\n{api.describe('API')}"
        after = client.get(f"/api/task/{accepted.json()['task_id']}")
        assert after.status_code == 200, after.text
        for _ in range(3):  # each pooled connection is sound, not only the first one
            assert submit().status_code == 202, api.describe("API")


def _wait_for_success(
    client: httpx.Client, task_ids: list[str], timeout: float, diagnostics: Callable[[], str]
) -> dict[str, str]:
    """Poll until every task reads success; a 404 or a 503 meanwhile is fine (the restarted
    Redis holds no record until the worker writes the final state)."""
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task_id in task_ids:
            if last.get(task_id) == "success":
                continue
            response = client.get(f"/api/task/{task_id}")
            last[task_id] = (
                response.json()["status"]
                if response.status_code == 200
                else str(response.status_code)
            )
        if all(last.get(task_id) == "success" for task_id in task_ids):
            break
        time.sleep(0.5)
    return last


@pytest.mark.parametrize("result_backend", ["redis", "postgresql"])
def test_running_tasks_survive_a_result_backend_outage(
    rendered_projects: RenderedProjects, tmp_path: Path, result_backend: str
) -> None:
    """Ten reports, five running, when the result backend goes away for 20 s (longer than
    Celery's default retries of a result write last): every one ends in success once it is
    back. Redis: a private redis-server, stopped and started again (empty). PostgreSQL: a TCP
    proxy in front of it, killed (its connections reset, new ones refused) and started again.
    """
    variant = Variant() if result_backend == "redis" else RABBITMQ_POSTGRESQL
    project = rendered_projects.synced(DEFAULT_PYTHON, variant)
    outage_seconds = 20.0
    with contextlib.ExitStack() as stack:
        urls = stack.enter_context(backend_urls(variant, tmp_path))
        start_outage: Callable[[], None]
        if result_backend == "redis":
            # The broker stays on the first private Redis; the results get one of their own.
            results = contextlib.ExitStack()
            stack.push(results)
            port = results.enter_context(private_redis_server(tmp_path / "results"))
            urls["result_backend"] = f"redis://127.0.0.1:{port}/0"
            start_outage = results.close

            def end_outage() -> None:
                stack.enter_context(private_redis_server(tmp_path / "results", port=port))

        else:
            target_port = urlsplit(urls["result_backend"]).port
            assert target_port is not None
            proxy = stack.enter_context(TcpProxy(target_port))
            urls["result_backend"] = through_proxy(urls["result_backend"], proxy)
            start_outage = proxy.stop

            def end_outage() -> None:
                stack.enter_context(TcpProxy(target_port, port=proxy.port))

        env = {
            **service_env(urls),
            "REPORT_STEPS": "20",
            "REPORT_STEP_DELAY_SECONDS": "0.5",
            "BROKER_SOCKET_TIMEOUT_SECONDS": "1",
        }
        api_port = free_port()
        api = stack.enter_context(
            api_process(project, port=api_port, env=env, log_path=tmp_path / "api.log")
        )
        worker = stack.enter_context(
            worker_process(project, env=env, log_path=tmp_path / "worker.log", concurrency=5)
        )
        client = stack.enter_context(api_client(api_port, variant, timeout=30))

        def diagnostics() -> str:
            return f"{api.describe('API', 30)}\n{worker.describe('worker', 80)}"

        task_ids = []
        for user_id in range(1, 11):
            accepted = client.post(f"/api/report/{user_id}", headers=JSON_CONTENT)
            assert accepted.status_code == 202, accepted.text
            task_ids.append(accepted.json()["task_id"])
        wait_for_task(
            client, task_ids[0], {"progress"}, timeout=TASK_TIMEOUT, diagnostics=diagnostics
        )
        log_offset = worker.log_size()

        start_outage()
        time.sleep(outage_seconds)
        assert worker.running, f"the worker exited during the outage\n{diagnostics()}"
        end_outage()

        states = _wait_for_success(client, task_ids, 3 * TASK_TIMEOUT, diagnostics)
        lost = [task_id for task_id in task_ids if states.get(task_id) != "success"]
        print(f"{result_backend} outage of {outage_seconds:.0f} s: {len(lost)} of 10 tasks lost")
        assert not lost, f"{states}\n{diagnostics()}"
        outage_log = worker.log_since(log_offset)
        tracebacks = outage_log.count("Traceback (most recent call last)")
        lines = len(outage_log.splitlines())
        print(f"worker log during the outage: {lines} lines, {tracebacks} tracebacks")
        assert tracebacks == 0 and lines <= 60, f"{lines} lines:\n{outage_log[-5000:]}"


def test_a_killed_worker_s_task_is_delivered_again_within_the_stated_bound(
    rendered_projects: RenderedProjects, tmp_path: Path
) -> None:
    """Redis broker: the only worker is killed with SIGKILL mid-report, and another one
    started; the report runs again and succeeds within the visibility timeout plus the sweep
    interval (the bound the README states), plus the report's own run time."""
    variant = Variant()
    project = rendered_projects.synced(DEFAULT_PYTHON, variant)
    visibility_timeout = 10
    report_seconds = 10 * 0.3
    with contextlib.ExitStack() as stack:
        urls = stack.enter_context(backend_urls(variant, tmp_path))
        env = {
            **service_env(urls),
            "BROKER_VISIBILITY_TIMEOUT_SECONDS": str(visibility_timeout),
            "TASK_SOFT_TIME_LIMIT_SECONDS": "6",
            "TASK_TIME_LIMIT_SECONDS": "8",
            "REPORT_STEPS": "10",
            "REPORT_STEP_DELAY_SECONDS": "0.3",
        }
        api_port = free_port()
        api = stack.enter_context(
            api_process(project, port=api_port, env=env, log_path=tmp_path / "api.log")
        )
        first = stack.enter_context(
            worker_process(project, env=env, log_path=tmp_path / "first.log", concurrency=1)
        )
        client = stack.enter_context(api_client(api_port, variant, timeout=30))

        def diagnostics() -> str:
            return f"{api.describe('API', 30)}\n{first.describe('first worker', 40)}"

        accepted = client.post("/api/report/7", headers=JSON_CONTENT)
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["task_id"]
        wait_for_task(client, task_id, {"progress"}, timeout=TASK_TIMEOUT, diagnostics=diagnostics)
        assert first.process is not None
        os.killpg(first.process.pid, signal.SIGKILL)  # the worker and its pool: no goodbye
        killed_at = time.monotonic()
        first.process.wait(timeout=10)

        second = stack.enter_context(
            worker_process(project, env=env, log_path=tmp_path / "second.log", concurrency=1)
        )
        bound = visibility_timeout + REDELIVERY_SWEEP_SECONDS + report_seconds + 10  # slack
        body = wait_for_task(
            client,
            task_id,
            {"success", "failure"},
            timeout=bound,
            diagnostics=lambda: f"{diagnostics()}\n{second.describe('second worker', 40)}",
        )
        seconds = time.monotonic() - killed_at
        print(f"redelivery after kill -9: success {seconds:.1f} s after the kill")
        assert body["status"] == "success", body
