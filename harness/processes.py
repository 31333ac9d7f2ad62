"""The rendered service's processes, and the ports and Redis servers they use.

- `free_port()` / `closed_port()`: a TCP port on 127.0.0.1 that is free / that refuses.
- `ServiceProcess`: a command of a rendered project (`uv run --frozen --no-sync ...`) run in
  its own process group, logged to a file, waited on until ready, stopped on exit;
  `api_process()` and `worker_process()` make the service's API and Celery worker;
  `run_to_exit()` runs a command that must refuse to start.
- `redis_databases()`: Redis database numbers claimed for one run, flushed before/after.
- `private_redis_server()`: a `redis-server` of its own, optionally on a given port.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from harness.rendering import RenderedProject, project_env
from harness.services import claim_redis_databases

LOG_TAIL_LINES = 60


# --------------------------------------------------------------------------------------
# Ports


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A port that refuses connections: a free port, checked to refuse."""
    for _ in range(20):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no closed port found on 127.0.0.1")


# --------------------------------------------------------------------------------------
# Processes


class ServiceNotReady(RuntimeError):
    """A service exited or did not become ready in time; the message holds its log tail."""


@dataclass
class ServiceProcess:
    """Run `uv run --frozen --no-sync *args` in `cwd` until the `with` block ends.

    Ready when `ready_url` answers (with `ready_status`, or any status if None) and/or when
    `ready_log` (a regex) appears in the log. Output (stdout and stderr) goes to `log_path`.
    On exit: SIGTERM to the process group, SIGKILL after `stop_timeout` seconds. If the
    block raised, the log tail is printed (pytest shows it with the failure).
    """

    name: str
    args: list[str]
    cwd: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    ready_status: int | None = 200
    ready_log: str | None = None
    ready_timeout: float = 60.0
    stop_timeout: float = 10.0
    tail_skip: str | None = None  # regex of routine lines left out of log tails
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"$ uv run --frozen --no-sync {' '.join(self.args)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                ["uv", "run", "--frozen", "--no-sync", *self.args],
                cwd=self.cwd,
                env=project_env(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches every child
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        url_ok = self.ready_url is None
        log_ok = self.ready_log is None
        last_error = ""
        while time.monotonic() < deadline:
            if not self.running:
                raise ServiceNotReady(self.describe(f"{self.name} exited before it was ready"))
            if not log_ok and self.ready_log is not None:
                log_ok = re.search(self.ready_log, self.log_text()) is not None
            if not url_ok and self.ready_url is not None:
                try:
                    response = httpx.get(self.ready_url, timeout=2)
                except httpx.HTTPError as exc:
                    last_error = repr(exc)
                else:
                    url_ok = self.ready_status is None or response.status_code == self.ready_status
                    last_error = f"HTTP {response.status_code}: {response.text[:200]}"
            if url_ok and log_ok:
                return
            time.sleep(0.1)
        raise ServiceNotReady(
            self.describe(
                f"{self.name} not ready after {self.ready_timeout:.0f} s "
                f"(url ok: {url_ok}, log ok: {log_ok}, last probe: {last_error or '-'})"
            )
        )

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            self._kill_group()
            return
        # SIGTERM to `uv run` alone: it forwards the signal to its child. Signalling the
        # whole group would hit the child twice and a Celery worker's pool processes directly.
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            process.wait(timeout=10)
        self._kill_group()  # children that outlived their parent

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def _kill_group(self) -> None:
        self._signal_group(signal.SIGKILL)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is not None and not isinstance(exc, ServiceNotReady):
            print(self.describe(f"{self.name} stopped after an error"))

    # -- inspection ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset: int) -> str:
        with contextlib.suppress(FileNotFoundError), self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")
        return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        kept = self.log_text().splitlines()
        if self.tail_skip is not None:
            skip = re.compile(self.tail_skip)
            kept = [line for line in kept if not skip.search(line)]
        return "\n".join(kept[-lines:])

    def wait_for_log(self, pattern: str, timeout: float, since: int = 0) -> re.Match[str]:
        """Wait until `pattern` appears in the log (after byte offset `since`)."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log_since(since))
            if match is not None:
                return match
            if time.monotonic() >= deadline:
                raise AssertionError(self.describe(f"{pattern!r} not in {self.name}'s log"))
            time.sleep(0.1)

    def describe(self, headline: str, lines: int = LOG_TAIL_LINES) -> str:
        code = None if self.process is None else self.process.poll()
        status = "running" if code is None else f"exit code {code}"
        return (
            f"{headline} [{status}; full log: {self.log_path}]\n"
            f"----- last {lines} lines of {self.name}"
            f"{'' if self.tail_skip is None else f' (without lines matching {self.tail_skip!r})'}"
            f" -----\n{self.log_tail(lines)}\n"
            f"----- end of {self.name} -----"
        )


@dataclass(frozen=True)
class Exited:
    returncode: int
    output: str


def run_to_exit(
    project: RenderedProject, args: list[str], *, env: dict[str, str], timeout: float
) -> Exited:
    """Run `uv run --frozen --no-sync *args` in the project, for a command that must exit by
    itself (one that refuses to start) within `timeout` seconds: else its process group is
    killed and AssertionError raised. Output is stdout and stderr together."""
    process = subprocess.Popen(
        ["uv", "run", "--frozen", "--no-sync", *args],
        cwd=project.path,
        env=project_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=10)
        raise AssertionError(
            f"`{' '.join(args)}` still running after {timeout} s:\n{output[-3000:]}"
        ) from None
    return Exited(process.returncode, output)


def api_process(
    project: RenderedProject,
    *,
    port: int,
    env: dict[str, str],
    log_path: Path,
    name: str = "api",
    **options: Any,
) -> ServiceProcess:
    """The rendered service's API (uvicorn on 127.0.0.1:`port`), ready when /health/live
    answers; `options` are ServiceProcess fields (timeouts, tail_skip)."""
    return ServiceProcess(
        name=name,
        args=[
            "uvicorn",
            f"{project.package_name}.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=project.path,
        env=env,
        log_path=log_path,
        ready_url=f"http://127.0.0.1:{port}/health/live",
        **options,
    )


def worker_process(
    project: RenderedProject,
    *,
    env: dict[str, str],
    log_path: Path,
    concurrency: int = 2,
    options: tuple[str, ...] = (),
) -> ServiceProcess:
    """A Celery worker of the rendered service, under a node name of its own (ready when that
    node says so, whatever other workers share the broker); `options` are more worker
    arguments."""
    node = f"worker-{uuid.uuid4().hex[:8]}"
    return ServiceProcess(
        name="worker",
        args=[
            "celery",
            "-A",
            f"{project.package_name}.celery_app",
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            *options,
            "-n",
            f"{node}@%h",
        ],
        cwd=project.path,
        env=env,
        log_path=log_path,
        ready_log=rf"{node}@\S+ ready\.",
        stop_timeout=15,
    )


# --------------------------------------------------------------------------------------
# Redis databases


@contextlib.contextmanager
def redis_databases(
    count: int,
    *,
    host: str = "127.0.0.1",
    port: int = 6379,
    candidates: range = range(2, 8),  # harness.services.redis_database uses 8-15
    lease_seconds: int = 1800,
) -> Iterator[list[int]]:
    """Claim `count` Redis databases for the `with` block, flushed at start and end.

    See `harness.services.claim_redis_databases` (the one lock scheme): concurrent test runs
    (xdist workers, other checkouts) never share one. Databases 0 and 1 (the service's
    defaults) and 8-15 (`services.redis_database`) are left alone by default.
    """
    with claim_redis_databases(
        count, host=host, port=port, candidates=candidates, lease_seconds=lease_seconds
    ) as claimed:
        yield claimed


# --------------------------------------------------------------------------------------
# A Redis server of one's own


@contextlib.contextmanager
def private_redis_server(
    folder: Path, *, port: int | None = None, ready_timeout: float = 10.0
) -> Iterator[int]:
    """A `redis-server` of its own on 127.0.0.1:<port> (a free one if None), without
    persistence, for the `with` block; yields its port. For measurements that must see only
    their own clients (load, `INFO commandstats`), and for outages (stopped at the end of the
    block, started again on the same port by another). Raises FileNotFoundError without a
    redis-server binary."""
    import shutil

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not on PATH")
    folder.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--logfile",
            str(folder / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {port} did not start; see {folder / 'redis.log'}"
                    ) from None
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
