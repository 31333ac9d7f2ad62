"""The benchmark: the rendered default service, with and without its fast paths, against the
careful and the usual pattern, side by side.

`uv run python -m bench` (full, a few minutes) or `uv run python -m bench --smoke` (seconds).
See bench/__init__.py for what is measured and how.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import clients, report
from harness.processes import (
    ServiceProcess,
    free_port,
    private_redis_server,
    redis_databases,
    worker_process,
)
from harness.rendering import (
    TEMPLATE_ROOT,
    RenderedProject,
    project_env,
    render,
    snapshot_template,
)

BENCH_DIR = Path(__file__).resolve().parent
APPS_DIR = BENCH_DIR / "apps"
WEBHOOK_SECRET = "benchmark-webhook-secret-0123456789"
ENQUEUE_BODY = {"data": {"customer": 42, "items": [1, 2, 3], "note": "benchmark"}}


@dataclass(frozen=True)
class Profile:
    name: str
    reps: int  # latency runs: A,B repeated this many times (A,B,A,B for 2)
    http_reps: int  # wrk runs of each load, A,B repeated (a median of 3 outlasts one bad run)
    wrk_seconds: int
    wrk_connections: int
    warmup_seconds: int
    latency_samples: dict[str, int]
    fanout_streams: tuple[int, ...]  # the last one is "the" fan-out figure
    fanout_reps: int  # A,B runs at the largest stream count (smaller counts: once each)
    fanout_tasks: int
    report_steps: int
    step_delay: float
    worker_concurrency: int
    render_reps: int
    fresh_to_green: bool


FULL = Profile(
    name="full",
    reps=2,
    http_reps=3,
    wrk_seconds=10,
    wrk_connections=32,
    warmup_seconds=2,
    latency_samples={"ours": 100, "ours-off": 100, "careful": 20, "usual": 20},
    fanout_streams=(100, 1000),
    fanout_reps=2,
    fanout_tasks=10,
    report_steps=100,
    step_delay=0.1,
    worker_concurrency=10,
    render_reps=3,
    fresh_to_green=True,
)

SMOKE = Profile(
    name="smoke",
    reps=1,
    http_reps=1,
    wrk_seconds=1,
    wrk_connections=8,
    warmup_seconds=1,
    latency_samples={"ours": 3, "ours-off": 3, "careful": 2, "usual": 2},
    fanout_streams=(20,),
    fanout_reps=1,
    fanout_tasks=2,
    report_steps=5,
    step_delay=0.05,
    worker_concurrency=2,
    render_reps=1,
    fresh_to_green=False,
)

SERVERS = report.SERVERS
OURS = ("ours", "ours-off")
# The ASGI app each contender serves ("{package}" is the rendered package), and its settings.
APPS = {
    "ours": "{package}.main:app",
    "ours-off": "{package}.main:app",
    "careful": "careful_app:app",
    "usual": "usual_app:app",
}
APP_ENV = {"ours-off": {"FAST_PATHS": "false"}}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of the live processes of a process group (a service)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # pgrp; utime and stime follow at 11 and 12
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def service_cpu(service: ServiceProcess | None) -> float:
    if service is None or service.process is None:
        return 0.0
    return group_cpu_seconds(service.process.pid)


# --------------------------------------------------------------------------------------
# Redis


@dataclass
class RedisSetup:
    port: int
    broker_db: int
    results_db: int
    tests_db: int
    private: bool

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=10)

    def command_counts(self) -> dict[str, int]:
        with contextlib.closing(self.client()) as client:
            stats = client.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if name != "cmdstat_info"
        }

    def version(self) -> str:
        with contextlib.closing(self.client()) as client:
            return str(client.info("server")["redis_version"])

    def purge_queue(self) -> None:
        """Drop the tasks the enqueue load left in the broker (no worker runs then)."""
        with contextlib.closing(self.client(self.broker_db)) as client:
            keys = [b"celery", *client.scan_iter(match=b"celery\x06\x16*", count=1000)]
            client.delete(*keys)


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {name: after[name] - before.get(name, 0) for name in after}
    return {name: count for name, count in sorted(delta.items()) if count}


@contextlib.contextmanager
def redis_setup(work: Path) -> Iterator[RedisSetup]:
    """A private redis-server when there is one (INFO commandstats then counts only this
    run's commands); else three databases of the machine's Redis, claimed with the tests'
    allocator."""
    with contextlib.ExitStack() as stack:
        try:
            port = stack.enter_context(private_redis_server(work / "redis"))
            private = True
        except FileNotFoundError:
            port, private = 6379, False
            log("no redis-server binary: using 127.0.0.1:6379 (commandstats include others)")
        broker, results, tests = stack.enter_context(redis_databases(3, port=port))
        yield RedisSetup(port, broker, results, tests, private)


# --------------------------------------------------------------------------------------
# Rendering and the fresh project's tests


def time_rendering(profile: Profile, work: Path) -> dict[str, Any]:
    """Render the default variant `render_reps` times: from git HEAD (Copier clones the
    repository, as for a user's `copier copy <url>`) and from a plain folder."""
    head, folder = [], []
    snapshot = snapshot_template(work / "template-snapshot")
    for i in range(profile.render_reps):
        start = time.perf_counter()
        render(work / f"render-head-{i}" / "my-service")
        head.append(time.perf_counter() - start)
        start = time.perf_counter()
        render(work / f"render-folder-{i}" / "my-service", template=snapshot)
        folder.append(time.perf_counter() - start)
    return {"from_git_head_s": head, "from_folder_s": folder}


def fresh_project(profile: Profile, work: Path, tests_redis_url: str) -> tuple[Any, Any]:
    """Render, `uv sync`, and (full runs) the rendered project's own tests, timed."""
    timing: dict[str, Any] = {}
    start = time.perf_counter()
    project = render(work / "project" / "my-service")
    timing["render_s"] = time.perf_counter() - start
    start = time.perf_counter()
    project.sync()
    timing["uv_sync_s"] = time.perf_counter() - start
    if profile.fresh_to_green:
        start = time.perf_counter()
        result = project.run(
            "pytest", "-q", "-p", "no:cacheprovider", env={"REDIS_URL": tests_redis_url}
        )
        timing["pytest_s"] = time.perf_counter() - start
        timing["pytest_summary"] = (result.stdout.strip().splitlines() or [""])[-1]
        timing["green"] = result.returncode == 0
        if result.returncode != 0:
            raise RuntimeError(f"the fresh project's tests failed:\n{result.stdout[-3000:]}")
        timing["total_s"] = timing["render_s"] + timing["uv_sync_s"] + timing["pytest_s"]
    return project, timing


# --------------------------------------------------------------------------------------
# The stack


@dataclass
class Stack:
    profile: Profile
    project: RenderedProject
    redis: RedisSetup
    logs: Path
    env: dict[str, str]
    bases: dict[str, str]
    apis: dict[str, ServiceProcess] = field(default_factory=dict)
    worker: ServiceProcess | None = None
    worker_starts: int = 0

    @property
    def package(self) -> str:
        return self.project.package_name

    def api(self, label: str) -> ServiceProcess:
        port = int(self.bases[label].rsplit(":", 1)[1])
        target = APPS[label].format(package=self.package)
        return ServiceProcess(
            name=f"api-{label}",
            args=[
                "uvicorn",
                "lagwrap:app",
                "--app-dir",
                str(APPS_DIR),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=self.project.path,
            log_path=self.logs / f"api-{label}.log",
            env={**self.env, **APP_ENV.get(label, {}), "BENCH_ASGI_APP": target},
            ready_url=f"{self.bases[label]}/",
        )

    def start_worker(self) -> None:
        assert self.worker is None
        self.worker_starts += 1
        self.worker = worker_process(
            self.project,
            env=self.env,
            log_path=self.logs / f"worker-{self.worker_starts}.log",
            concurrency=self.profile.worker_concurrency,
            options=("-E", "--without-mingle"),
        ).start()

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None


# --------------------------------------------------------------------------------------
# Phases


async def server_info(client: httpx.AsyncClient, base: str) -> dict[str, Any]:
    response = await client.get(f"{base}/__bench__/lag")
    response.raise_for_status()
    return dict(response.json())


async def latency_run(client: httpx.AsyncClient, base: str, samples: int) -> dict[str, Any]:
    """Submit a no-op task and read its stream until the final event, one at a time."""
    latencies, task_ids, failures = [], [], []
    for _ in range(samples):
        start = time.monotonic()
        task_id = await clients.submit(client, f"{base}/api/process", json={"data": {}})
        record = clients.StreamRecord(task_id)
        await clients.read_stream(f"{base}/api/task/{task_id}/stream", record, None, deadline=30)
        if record.final != "complete" or record.final_at is None:
            failures.append(record.error or f"final event {record.final!r}")
            continue
        latencies.append(1000 * (record.final_at - start))
        task_ids.append(task_id)
    return {
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
        "failures": failures,
        "task_ids": task_ids,
    }


async def fanout_run(
    stack: Stack, label: str, streams: int, client: httpx.AsyncClient
) -> dict[str, Any]:
    """`streams` SSE clients on `fanout_tasks` report tasks, all opened before the tasks
    start; then the worker starts and every progress event is timed against its PUBLISH."""
    profile, base = stack.profile, stack.bases[label]
    stack.stop_worker()
    task_ids = [
        await clients.submit(
            client, f"{base}/api/report/{i + 1}", headers={"Content-Type": "application/json"}
        )
        for i in range(profile.fanout_tasks)
    ]
    task_seconds = profile.report_steps * profile.step_delay
    deadline = 60 + 3 * task_seconds
    out_file = stack.logs / f"observer-{label}-{streams}-{time.monotonic_ns()}.json"
    observer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.observer",
            stack.redis.url(stack.redis.results_db),
            str(out_file),
            str(deadline),
            *(f"celery-task-meta-{task_id}" for task_id in task_ids),
        ],
        cwd=TEMPLATE_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert observer.stdout is not None
        ready = await asyncio.wait_for(asyncio.to_thread(observer.stdout.readline), 30)
        if ready.strip() != "ready":
            raise RuntimeError("the pub/sub observer did not start")
        records = [clients.StreamRecord(task_ids[i % len(task_ids)]) for i in range(streams)]
        watchers: list[asyncio.Task[None]] = []
        for start in range(0, streams, 100):  # open in batches: no connect storm
            opened = []
            for record in records[start : start + 100]:
                event = asyncio.Event()
                opened.append(event)
                url = f"{base}/api/task/{record.task_id}/stream"
                watchers.append(
                    asyncio.create_task(clients.read_stream(url, record, event, deadline))
                )
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 60)
        await asyncio.sleep(0.2)  # the last streams' subscriptions and first reads
        before = stack.redis.command_counts()
        started = time.monotonic()
        api_cpu, client_cpu = service_cpu(stack.apis[label]), time.process_time()
        await asyncio.to_thread(stack.start_worker)
        await asyncio.gather(*watchers)
        elapsed = time.monotonic() - started
        api_cpu = service_cpu(stack.apis[label]) - api_cpu
        client_cpu = time.process_time() - client_cpu
        after = stack.redis.command_counts()
        await asyncio.to_thread(observer.wait, deadline + 30)
    finally:
        if observer.poll() is None:
            observer.kill()
            observer.wait()
        stack.stop_worker()
    published: dict[tuple[str, object], float] = {}
    for channel, current, at in json.loads(out_file.read_text()):
        published.setdefault((channel.removeprefix("celery-task-meta-"), current), at)
    delays, missing_publishes = [], 0
    for record in records:
        arrivals: list[tuple[object, float]] = list(record.progress.items())
        if record.final_at is not None:
            arrivals.append(("final", record.final_at))
        for current, at in arrivals:
            sent = published.get((record.task_id, current))
            if sent is None:
                missing_publishes += 1
            else:
                delays.append(1000 * (at - sent))
    expected = set(range(1, profile.report_steps + 1))
    updates = profile.fanout_tasks * profile.report_steps
    delta = command_delta(before, after)
    total_commands = sum(delta.values())
    return {
        "streams": streams,
        "tasks": profile.fanout_tasks,
        "updates_published": updates,
        "updates_expected": streams * profile.report_steps,
        "updates_delivered": sum(len(expected & set(r.progress)) for r in records),
        "streams_with_every_update": sum(expected <= set(r.progress) for r in records),
        "streams_completed": sum(r.final == "complete" for r in records),
        "stream_errors": sorted({r.error for r in records if r.error})[:5],
        "delivery_p50_ms": percentile(delays, 0.5),
        "delivery_p99_ms": percentile(delays, 0.99),
        "delivery_max_ms": max(delays, default=float("nan")),
        "events_timed": len(delays),
        "events_without_publish": missing_publishes,
        "seconds": elapsed,
        "api_cpu_s": api_cpu,
        "client_cpu_s": client_cpu,
        "redis_commands": total_commands,
        "redis_commands_per_update": total_commands / updates,
        "redis_commands_by_name": delta,
    }


def lag_outside_stalls(
    windows: list[list[float]], idle_windows: list[list[float]]
) -> tuple[float, int, int]:
    """The API's largest lag (ms) among its samples that overlap none of the idle process's
    stalls; how many samples did overlap one; and how many stalls there were. Samples are
    [sleep began (s), its end (s), lag (ms)], on one clock for both processes."""
    stalls = [(start, end) for start, end, lag in idle_windows if lag > report.STALL_MS]
    largest, overlapping = 0.0, 0
    for start, end, lag in windows:
        if any(stall_start < end and start < stall_end for stall_start, stall_end in stalls):
            overlapping += 1
        else:
            largest = max(largest, lag)
    return largest, overlapping, len(stalls)


async def idle_lag_monitor(stack: Stack, seconds: int) -> asyncio.subprocess.Process:
    """The lag monitor in a process of its own that serves nothing, for `seconds`: what the
    machine alone adds to a loop's lag while the load runs."""
    return await asyncio.create_subprocess_exec(
        "uv",
        "run",
        "--frozen",
        "--no-sync",
        "python",
        str(APPS_DIR / "lagmonitor.py"),
        str(seconds),
        cwd=stack.project.path,
        env=project_env(),
        stdout=subprocess.PIPE,
    )


async def http_load(
    stack: Stack, label: str, kind: str, scripts: dict[str, Path], seconds: int
) -> dict[str, Any]:
    """wrk against one endpoint; with a probe and the loop-lag monitor for enqueue/status."""
    base = stack.bases[label]
    url = f"{base}/" if kind != "enqueue" else f"{base}/api/process"
    script = {"root": None, "enqueue": scripts["enqueue"], "status": scripts["status"]}[kind]
    async with httpx.AsyncClient(timeout=30, headers=clients.AUTHORIZATION) as client:
        (await client.get(f"{base}/__bench__/lag?reset")).raise_for_status()
        before = stack.redis.command_counts()
        api_cpu = service_cpu(stack.apis[label])
        stop = asyncio.Event()
        probing = asyncio.create_task(clients.probe(client, f"{base}/", stop))
        idle_monitor = await idle_lag_monitor(stack, seconds)
        try:
            result = await clients.run_wrk(
                url,
                seconds=seconds,
                connections=stack.profile.wrk_connections,
                script=script,
            )
        finally:
            stop.set()
            probe_latencies = await probing
            idle_output, _ = await idle_monitor.communicate()
        idle_lag = json.loads(idle_output)
        api_cpu = service_cpu(stack.apis[label]) - api_cpu
        after = stack.redis.command_counts()
        lag = await server_info(client, base)
    if kind == "enqueue":
        stack.redis.purge_queue()
    if not result.clean:
        raise RuntimeError(
            f"{label} {kind}: {result.non_2xx} non-2xx responses, {result.socket_errors} "
            f"socket errors:\n{result.output}"
        )
    delta = command_delta(before, after)
    requests = result.requests + len(probe_latencies)
    outside_stalls, in_stalls, stalls = lag_outside_stalls(lag["windows"], idle_lag["windows"])
    return {
        "rps": result.rps,
        "requests": result.requests,
        "wrk_p50_ms": result.p50_ms,
        "wrk_p99_ms": result.p99_ms,
        "loop_lag_max_ms": lag["max_ms"],
        "loop_lag_max_outside_stalls_ms": outside_stalls,
        "loop_lag_samples_in_stalls": in_stalls,
        "loop_lag_p99_ms": lag["p99_ms"],
        "loop_lag_samples": lag["samples"],
        "gc_longest_ms": max(lag["gc_longest_ms"]),
        "gc_full_collections": lag["gc_collections"][2],
        "idle_stalls": stalls,
        "idle_lag_max_ms": idle_lag["max_ms"],
        "idle_lag_p99_ms": idle_lag["p99_ms"],
        "probe_p50_ms": percentile(probe_latencies, 0.5),
        "probe_max_ms": max(probe_latencies, default=float("nan")),
        "probe_samples": len(probe_latencies),
        "api_cpu_s": api_cpu,
        "api_cpu_us_per_request": 1e6 * api_cpu / requests if requests else float("nan"),
        "redis_commands_per_request": sum(delta.values()) / requests if requests else 0.0,
        "redis_commands_by_name": delta,
    }


# --------------------------------------------------------------------------------------
# The run


def template_revision() -> dict[str, Any]:
    """The commit the service was rendered from, and whether the template had uncommitted
    changes (Copier renders HEAD with them included)."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=TEMPLATE_ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    dirty = git("status", "--porcelain", "--", "template", "copier.yml", "hooks")
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(dirty)}


def cpu_probe() -> float:
    """Seconds for a fixed pure-Python loop: how fast a core of this machine is right now.
    Virtual machines vary, by host and by the minute; two runs compare only if this does."""
    started = time.perf_counter()
    total = 0
    for step in range(5_000_000):
        total += step
    return round(time.perf_counter() - started, 3)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return {
        "load_average_at_start": os.getloadavg(),
        "cpu_probe_seconds_at_start": cpu_probe(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory": memory,
        "os": platform.platform(),
        "wrk": (wrk.stdout or wrk.stderr).split("Copyright")[0].strip(),
    }


async def run_stack(stack: Stack, results: dict[str, Any]) -> None:
    profile = stack.profile
    figures: dict[str, Any] = results["figures"]
    async with httpx.AsyncClient(
        headers=clients.AUTHORIZATION,
        timeout=httpx.Timeout(60, connect=10),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
    ) as client:
        for label in SERVERS:
            info = await server_info(client, stack.bases[label])
            results["servers"][label] = {key: info[key] for key in ("loop", "http")}

        # -- with a worker: latency of a no-op task ------------------------------------
        log("latency: no-op task, submit -> final SSE event")
        stack.start_worker()
        status_ids: list[str] = []
        for rep in range(profile.reps):
            for label in SERVERS:
                run = await latency_run(client, stack.bases[label], profile.latency_samples[label])
                if run["failures"]:
                    raise RuntimeError(f"{label} latency: {run['failures'][:3]}")
                status_ids += run.pop("task_ids")
                figures["latency"][label].append(run)
                log(f"  {label} #{rep + 1}: p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms")
        stack.stop_worker()

        # -- SSE fan-out ----------------------------------------------------------------
        *smaller, largest = profile.fanout_streams
        plan = [(n, label) for n in smaller for label in SERVERS]
        plan += [(largest, label) for _ in range(profile.fanout_reps) for label in SERVERS]
        for streams, label in plan:
            log(f"fan-out: {label}, {streams} streams on {profile.fanout_tasks} tasks")
            run = await fanout_run(stack, label, streams, client)
            by_label = figures["fanout"].setdefault(str(streams), {name: [] for name in SERVERS})
            by_label[label].append(run)
            log(
                f"  delivered {run['updates_delivered']}/{run['updates_expected']}, "
                f"completed {run['streams_completed']}/{streams}, "
                f"p99 {run['delivery_p99_ms']:.1f} ms, "
                f"{run['redis_commands_per_update']:.2f} Redis commands/update"
            )

    # -- HTTP loads, no worker: tasks stay queued and are purged after each run ----------
    scripts = {
        "enqueue": clients.wrk_post_script(stack.logs, ENQUEUE_BODY),
        "status": clients.wrk_status_script(stack.logs, status_ids[:100]),
    }
    for label in SERVERS:  # warm-up: imports, connections, first-call caches
        for kind in ("root", "enqueue", "status"):
            await http_load(stack, label, kind, scripts, profile.warmup_seconds)
    for rep in range(profile.http_reps):
        for kind in ("root", "enqueue", "status"):
            for label in SERVERS:
                run = await http_load(stack, label, kind, scripts, profile.wrk_seconds)
                figures[kind][label].append(run)
                log(
                    f"{kind} #{rep + 1} {label}: {run['rps']:.0f} req/s, "
                    f"loop lag max {run['loop_lag_max_ms']:.1f} ms, "
                    f"{run['redis_commands_per_request']:.1f} Redis commands/request"
                )


def check(results: dict[str, Any], profile: Profile) -> list[str]:
    """What must hold whatever the timings: every phase ran, every stream of ours (with
    and without the fast paths) got every update, every stream of every app its final event."""
    problems = []
    figures = results["figures"]
    expected_runs = {kind: profile.http_reps for kind in ("root", "enqueue", "status")}
    for kind, expected in {**expected_runs, "latency": profile.reps}.items():
        for label in SERVERS:
            if len(figures[kind][label]) != expected:
                problems.append(f"{kind}/{label}: {len(figures[kind][label])} runs")
    for streams, by_label in figures["fanout"].items():
        for label, runs in by_label.items():
            for run in runs:
                if run["streams_completed"] != run["streams"]:
                    problems.append(
                        f"fan-out {streams}/{label}: {run['streams_completed']} of "
                        f"{run['streams']} streams completed: {run['stream_errors']}"
                    )
                if label in OURS and run["updates_delivered"] != run["updates_expected"]:
                    problems.append(
                        f"fan-out {streams}/{label}: {run['updates_delivered']} of "
                        f"{run['updates_expected']} updates delivered"
                    )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a short run that checks it works")
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for the results (default: bench/results for full runs, "
        "bench-results/ for smoke runs)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    profile = SMOKE if args.smoke else FULL
    out = args.out or (TEMPLATE_ROOT / ("bench-results" if args.smoke else "bench/results"))
    stem = "smoke" if args.smoke else "latest"
    if not clients.wrk_available():
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", message="Dirty template changes")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    log(f"{profile.name} run; work folder {work}")
    results: dict[str, Any] = {
        "profile": asdict(profile),
        "machine": machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "servers": {},
        "figures": {
            kind: {label: [] for label in SERVERS}
            for kind in ("root", "enqueue", "status", "latency")
        },
    }
    results["figures"]["fanout"] = {}
    try:
        log("rendering the default variant")
        results["template"] = template_revision()
        results["figures"]["render"] = time_rendering(profile, work)
        with redis_setup(work) as redis_conf:
            results["redis"] = {"version": redis_conf.version(), "private": redis_conf.private}
            log("fresh render -> uv sync" + (" -> pytest" if profile.fresh_to_green else ""))
            project, timing = fresh_project(profile, work, redis_conf.url(redis_conf.tests_db))
            results["figures"]["fresh_to_green"] = timing
            results["service_python"] = project.run("python", "--version").stdout.strip()
            env = {
                "CELERY_BROKER_URL": redis_conf.url(redis_conf.broker_db),
                "CELERY_RESULT_BACKEND": redis_conf.url(redis_conf.results_db),
                "WEBHOOK_SECRET": WEBHOOK_SECRET,
                "API_KEYS": clients.API_KEY,
                "REPORT_STEPS": str(profile.report_steps),
                "REPORT_STEP_DELAY_SECONDS": str(profile.step_delay),
                "BENCH_PACKAGE": project.package_name,
            }
            stack = Stack(
                profile=profile,
                project=project,
                redis=redis_conf,
                logs=work / "logs",
                env=env,
                bases={label: f"http://127.0.0.1:{free_port()}" for label in SERVERS},
            )
            with contextlib.ExitStack() as services:
                for label in SERVERS:
                    stack.apis[label] = services.enter_context(stack.api(label))
                services.callback(stack.stop_worker)
                asyncio.run(run_stack(stack, results))
    except BaseException:
        log(f"failed; logs are in {work / 'logs'}")
        raise
    results["seconds"] = time.monotonic() - started
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["machine"]["cpu_probe_seconds_at_end"] = cpu_probe()
    problems = check(results, profile)
    results["problems"] = problems
    summary = report.summarise(results)
    results["summary"] = summary
    out.mkdir(parents=True, exist_ok=True)
    markdown = report.markdown(results)
    (out / f"{stem}.md").write_text(markdown)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(markdown)
    log(f"wrote {out / stem}.md and .json in {results['seconds']:.0f} s")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if problems:
        for problem in problems:
            print(f"PROBLEM: {problem}", file=sys.stderr)
        return 1
    return 0
