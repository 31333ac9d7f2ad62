"""Helpers that boot a rendered service and talk to it: the one place tests do that.

- `free_port()` / `closed_port()`: a TCP port on 127.0.0.1 that is free / that refuses.
- `ServiceProcess`: a command of a rendered project (`uv run --frozen --no-sync ...`) run in
  its own process group, logged to a file, waited on until ready, stopped on exit;
  `api_process()` and `worker_process()` make the service's API and Celery worker;
  `run_to_exit()` runs a command that must refuse to start.
- `BOOT_API_KEY` / `api_headers(variant)`: the API key booted services accept, and the
  headers that send it (none with api_auth=none).
- `wait_for_task()`: poll a task's status until it is one of some states.
- `publish_raw_task()`: a task message published past the API, its arguments as given.
- `SmtpSink`: an SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message.
- `WebhookReceiver`: an HTTP server on 127.0.0.1 that records every request.
- `read_sse()`: the events of a server-sent-events stream, with an overall deadline;
  `read_sse_in_background()` reads one in a thread, open before the caller goes on;
  `follow_like_event_source()` reconnects with Last-Event-ID, as a browser does.
- `store_task_states()`: task states written through the service's own Celery backend.
- `redis_databases()`: Redis database numbers claimed for one test run, flushed before/after.
- `variant_backends(variant)`: a broker and a result backend of their own for one booted
  variant (Redis databases, a RabbitMQ vhost, a PostgreSQL database), with `ResultRecords`
  to look into the result store.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from tests.rendering import RenderedProject, project_env
from tests.services import (
    REDIS_HOST,
    REDIS_PORT,
    claim_redis_databases,
    postgres_database,
    rabbitmq_vhost,
    require_service,
)
from tests.variants import Variant

T = TypeVar("T")

# The key the booted services of api_auth=api_key variants accept (their API_KEYS).
BOOT_API_KEY = "boot-test-api-key-0123456789abcdef"


# Every POST declares JSON, bodiless ones too (the service answers 415 otherwise).
JSON_CONTENT = {"Content-Type": "application/json"}


def api_headers(variant: Variant) -> dict[str, str]:
    """The headers a client of the variant's API sends: its key, if the variant has keys."""
    return {"Authorization": f"Bearer {BOOT_API_KEY}"} if variant.has_api_key else {}


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


# --------------------------------------------------------------------------------------
# SMTP sink


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        return str(part.get_content())


class SmtpSink:
    """An SMTP server on 127.0.0.1:<free port> that keeps each message it accepts.

    `reject` and `defer`: recipient predicates; a matching RCPT TO gets a permanent
    (550) or a one-time temporary (451, accepted on the next attempt) refusal.
    """

    def __init__(
        self,
        reject: Callable[[str], bool] = lambda _: False,
        defer_once: Callable[[str], bool] = lambda _: False,
    ) -> None:
        self.port = free_port()
        self.messages: list[ReceivedMail] = []
        self.refusals: list[tuple[str, str]] = []
        self._reject = reject
        self._defer_once = defer_once
        self._deferred: set[str] = set()
        self._changed = threading.Condition()
        self._controller: Any = None

    # aiosmtpd handler hooks ----------------------------------------------------------

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        with self._changed:
            if self._reject(address):
                self.refusals.append((address, "550"))
                self._changed.notify_all()
                return "550 5.1.1 Mailbox unavailable"
            if self._defer_once(address) and address not in self._deferred:
                self._deferred.add(address)
                self.refusals.append((address, "451"))
                self._changed.notify_all()
                return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        with self._changed:
            self.messages.append(
                ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), message)
            )
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    # lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._controller is not None:
            self._controller.stop()

    def wait_for(self, predicate: Callable[[ReceivedMail], bool], timeout: float) -> ReceivedMail:
        """The first message matching `predicate`, waiting up to `timeout` seconds."""
        return wait_for_recorded(
            self._changed,
            self.messages,
            predicate,
            timeout,
            lambda: (
                f"mail received: {[(m.rcpt_tos, m.subject) for m in self.messages]}, "
                f"refused: {self.refusals}"
            ),
        )


def wait_for_recorded(
    changed: threading.Condition,
    recorded: list[T],
    predicate: Callable[[T], bool],
    timeout: float,
    describe: Callable[[], str],
) -> T:
    """The first recorded item matching `predicate`, waiting up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with changed:
        while True:
            for item in recorded:
                if predicate(item):
                    return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"nothing matching within {timeout} s; {describe()}")
            changed.wait(remaining)


# --------------------------------------------------------------------------------------
# Webhook receiver


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lowercased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1:<free port> that records each request and answers
    `status_for(path)` (200 unless told otherwise)."""

    def __init__(self, status_for: Callable[[str], int] = lambda _: 200) -> None:
        self.requests: list[ReceivedRequest] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = ReceivedRequest(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with receiver._changed:
                    receiver.requests.append(request)
                    receiver._changed.notify_all()
                status = status_for(self.path)
                payload = b'{"ok": true}' if status < 400 else b'{"ok": false}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(
        self, predicate: Callable[[ReceivedRequest], bool], timeout: float
    ) -> ReceivedRequest:
        return wait_for_recorded(
            self._changed,
            self.requests,
            predicate,
            timeout,
            lambda: f"requests: {[(r.method, r.path, r.body[:200]) for r in self.requests]}",
        )


# --------------------------------------------------------------------------------------
# Server-sent events


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class SseTimeout(AssertionError):
    def __init__(self, message: str, events: list[SseEvent]) -> None:
        super().__init__(f"{message}; events so far: {events}")
        self.events = events


class SseParser:
    """Server-sent events from the lines of a text/event-stream, fed one at a time (without
    their line ending). Comments, such as pings, are skipped."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> SseEvent | None:
        """The event that this line (a blank one) completes, if any."""
        if line == "":
            event = None
            if self._data:
                event = SseEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return event
        if not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
            elif name == "id":
                self._id = value
        return None


def read_sse(
    url: str,
    *,
    timeout: float,
    until: frozenset[str] = frozenset({"complete", "failure"}),
    on_open: Callable[[httpx.Response], None] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[httpx.Response, list[SseEvent]]:
    """Read a stream until an event named in `until` (inclusive) or the stream ends.

    Raises SseTimeout after `timeout` seconds in all. The stream should send keep-alive
    pings well within `timeout` for the deadline to be checked in time. A non-200 answer
    is returned with no events (its body read).
    """
    deadline = time.monotonic() + timeout
    events: list[SseEvent] = []
    client_timeout = httpx.Timeout(timeout, connect=5)
    parser = SseParser()
    with httpx.stream("GET", url, timeout=client_timeout, headers=headers) as response:
        if on_open is not None:
            on_open(response)
        if response.status_code != 200:
            response.read()
            return response, events
        try:
            for line in response.iter_lines():
                sse = parser.feed(line)
                if sse is not None:
                    events.append(sse)
                    if sse.event in until:
                        return response, events
                if time.monotonic() > deadline:  # checked at pings too
                    break
            else:
                return response, events
        except httpx.ReadTimeout:
            pass
    raise SseTimeout(f"stream {url} not finished within {timeout} s", events)


@dataclass(frozen=True)
class SseConnection:
    """One request of a stream's follower: the Last-Event-ID it sent and what it got."""

    last_event_id: str | None
    status: int
    events: list[SseEvent]


def follow_like_event_source(
    url: str,
    *,
    timeout: float,
    max_connections: int,
    reconnect_delay: float = 0.2,
    headers: dict[str, str] | None = None,
) -> list[SseConnection]:
    """Follow a stream as a browser's EventSource does: read each answer to its end, wait
    `reconnect_delay` (EventSource's default is about 3 s), connect again with the id of the
    last event received as Last-Event-ID, and stop at the first answer that is not 200.
    `headers` go with every request (a key; EventSource itself sends none).

    Raises SseTimeout past `timeout` seconds in all, AssertionError if the stream still
    answers 200 after `max_connections` connections.
    """
    deadline = time.monotonic() + timeout
    connections: list[SseConnection] = []
    last_event_id: str | None = None
    while len(connections) < max_connections:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SseTimeout(f"{url} still followed after {timeout} s: {connections}", [])
        sent = dict(headers or {})
        if last_event_id is not None:
            sent["Last-Event-ID"] = last_event_id
        response, events = read_sse(url, timeout=remaining, until=frozenset(), headers=sent)
        connections.append(SseConnection(last_event_id, response.status_code, events))
        if response.status_code != 200:
            return connections
        last_event_id = next((e.id for e in reversed(events) if e.id), last_event_id)
        time.sleep(reconnect_delay)
    raise AssertionError(f"{url} answers 200 after {max_connections} connections: {connections}")


# How long a stream may take to answer, and then to subscribe and make its first read.
SSE_OPEN_TIMEOUT = 10.0
SSE_SETTLE_SECONDS = 0.3


@dataclass
class SseInBackground:
    url: str
    outcome: Future[tuple[httpx.Response, list[SseEvent]]]

    def result(
        self, timeout: float, diagnostics: Callable[[], str]
    ) -> tuple[httpx.Response, list[SseEvent]]:
        """What read_sse returned; what it raised, or not ending within `timeout`, fails with
        `diagnostics()` (the services' log tails)."""
        try:
            return self.outcome.result(timeout)
        except Exception as exc:
            raise AssertionError(
                f"stream {self.url} did not end: {exc!r}\n{diagnostics()}"
            ) from exc


def read_sse_in_background(
    url: str,
    *,
    timeout: float,
    until: frozenset[str] = frozenset({"complete", "failure"}),
    headers: dict[str, str] | None = None,
) -> SseInBackground:
    """`read_sse()` in a thread of its own, for a stream that must be open before something
    happens. Returns once the stream is open and has settled."""
    opened = threading.Event()
    outcome: Future[tuple[httpx.Response, list[SseEvent]]] = Future()

    def read() -> None:
        try:
            outcome.set_result(
                read_sse(
                    url,
                    timeout=timeout,
                    until=until,
                    on_open=lambda _: opened.set(),
                    headers=headers,
                )
            )
        except BaseException as exc:
            outcome.set_exception(exc)
        finally:
            opened.set()

    threading.Thread(target=read, daemon=True).start()
    assert opened.wait(SSE_OPEN_TIMEOUT), f"{url} did not open within {SSE_OPEN_TIMEOUT} s"
    time.sleep(SSE_SETTLE_SECONDS)
    return SseInBackground(url, outcome)


# --------------------------------------------------------------------------------------
# Redis databases


@contextlib.contextmanager
def redis_databases(
    count: int,
    *,
    host: str = "127.0.0.1",
    port: int = 6379,
    candidates: range = range(2, 8),  # tests.services.redis_database uses 8-15
    lease_seconds: int = 1800,
) -> Iterator[list[int]]:
    """Claim `count` Redis databases for the `with` block, flushed at start and end.

    See `tests.services.claim_redis_databases` (the one lock scheme): concurrent test runs
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


# --------------------------------------------------------------------------------------
# A variant's broker and result backend


_STORE_STATES = """
import json, sys
from {package}.celery_app import celery_app
for state, result in json.loads(sys.argv[2]):
    celery_app.backend.store_result(sys.argv[1], result, state)
"""


def store_task_states(
    project: RenderedProject, env: dict[str, str], task_id: str, states: list[tuple[str, Any]]
) -> None:
    """Store `(state, result)`s of a task, in order, as a worker does: through the service's
    own Celery result backend (on Redis, a SET and a PUBLISH each), in a process of its own."""
    script = _STORE_STATES.format(package=project.package_name)
    done = project.run("python", "-c", script, task_id, json.dumps(states), env=env, timeout=60)
    assert done.returncode == 0, f"storing {states} failed:\n{done.stdout}\n{done.stderr}"


class ResultRecords:
    """What the result backend holds, seen from outside the service."""

    def snapshot(self) -> object:
        """Something equal before and after anything that must not store a record."""
        raise NotImplementedError

    def remove(self, task_id: str) -> None:
        """Delete a task's record, as expiry does, without telling anyone."""
        raise NotImplementedError

    def stored(self, task_id: str) -> str:
        """Everything stored for the task, as text (empty if nothing)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class RedisResultRecords(ResultRecords):
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.db = int(self.client.connection_pool.connection_kwargs.get("db", 0))

    def snapshot(self) -> object:
        return set(self.client.scan_iter(count=1000))

    def remove(self, task_id: str) -> None:
        assert self.client.delete(f"celery-task-meta-{task_id}") == 1, task_id

    def drop_result_channels(self) -> int:
        """Close the API's pub/sub connections (named `result-channels-<pid>`) on this
        database, as a network failure would; return how many there were."""
        dropped = 0
        for client in self.client.client_list():
            if client["name"].startswith("result-channels-") and int(client["db"]) == self.db:
                dropped += self.client.client_kill_filter(_id=client["id"])
        return dropped

    def stored(self, task_id: str) -> str:
        value = self.client.get(f"celery-task-meta-{task_id}")
        if value is None:
            return ""
        return value if isinstance(value, str) else value.decode(errors="replace")

    def close(self) -> None:
        self.client.close()


class PostgresResultRecords(ResultRecords):
    """Celery's SQLAlchemy result tables, read and written with psycopg."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def snapshot(self) -> object:
        """Rows per table of the public schema, leaving out empty tables: the service creates
        Celery's tables on first use, an attempt that stores nothing included."""
        with self._connect() as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'public' ORDER BY table_name"
                )
            ]
            counts = {
                table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
                for table in tables
            }
            return {table: rows for table, rows in counts.items() if rows}

    def task_table(self) -> str:
        """The table Celery keeps task results in (task_id, status, date_done columns)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT table_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND column_name IN ('task_id', 'date_done') "
                "GROUP BY table_name HAVING count(*) = 2"
            ).fetchall()
        if len(rows) != 1:
            raise AssertionError(f"expected one task result table, found {rows}")
        return str(rows[0][0])

    def insert_expired(self, task_id: str, age_days: int = 30) -> None:
        """A SUCCESS row done `age_days` ago, as Celery would have written it."""
        table = self.task_table()
        with self._connect() as conn:
            conn.execute(
                f'INSERT INTO "{table}" (id, task_id, status, date_done) '
                "VALUES (nextval('task_id_sequence'), %s, 'SUCCESS', "
                "(now() at time zone 'utc') - make_interval(days => %s))",
                (task_id, age_days),
            )

    def remove(self, task_id: str) -> None:
        table = self.task_table()
        with self._connect() as conn:
            deleted = conn.execute(f'DELETE FROM "{table}" WHERE task_id = %s', (task_id,))
            assert deleted.rowcount == 1, task_id

    def stored(self, task_id: str) -> str:
        """Every column of the task's rows; `result` (bytea: Celery's JSON, pickled) decoded
        as text, so the JSON in it can be searched."""
        table = self.task_table()
        with self._connect() as conn:
            rows = conn.execute(f'SELECT * FROM "{table}" WHERE task_id = %s', (task_id,))
            return "\n".join(
                " ".join(
                    bytes(value).decode(errors="replace")
                    if isinstance(value, bytes | memoryview)
                    else str(value)
                    for value in row
                )
                for row in rows
            )

    def has(self, task_id: str) -> bool:
        table = self.task_table()
        with self._connect() as conn:
            row = conn.execute(
                f'SELECT count(*) FROM "{table}" WHERE task_id = %s',
                (task_id,),
            ).fetchone()
        return bool(row and row[0])


@dataclass
class Backends:
    broker_url: str
    result_backend_url: str
    results: ResultRecords
    rabbitmq_vhost: str | None = None  # the vhost's name, with broker=rabbitmq


@contextlib.contextmanager
def variant_backends(broker: str, result_backend: str) -> Iterator[Backends]:
    """A broker and a result backend that nothing else uses, removed afterwards.

    Redis: claimed databases (`redis_databases`). RabbitMQ: a fresh vhost. PostgreSQL: a
    fresh database, reached as postgres without a password (trusted on 127.0.0.1).
    """
    with contextlib.ExitStack() as stack:
        redis_count = [broker, result_backend].count("redis")
        databases: list[int] = []
        if redis_count:
            require_service("Redis", REDIS_HOST, REDIS_PORT)
            databases = stack.enter_context(
                redis_databases(redis_count, host=REDIS_HOST, port=REDIS_PORT)
            )
        vhost = None
        if broker == "redis":
            broker_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{databases.pop(0)}"
        else:
            broker_url = stack.enter_context(rabbitmq_vhost())
            vhost = broker_url.rsplit("/", 1)[1]
        results: ResultRecords
        if result_backend == "redis":
            backend_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{databases.pop(0)}"
            results = RedisResultRecords(backend_url)
        else:
            url = stack.enter_context(postgres_database())
            backend_url = url.replace("postgresql://", "db+postgresql+psycopg://", 1)
            results = PostgresResultRecords(url)
        stack.callback(results.close)
        yield Backends(broker_url, backend_url, results, vhost)


# --------------------------------------------------------------------------------------
# A TCP proxy to freeze

_PROXY_SOURCE = """
import asyncio, sys

listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def handle(client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


class TcpProxy:
    """A TCP proxy from 127.0.0.1:`port` to 127.0.0.1:`target_port`, in a process of its own.

    `freeze()` stops that process (SIGSTOP): the kernel still accepts connections and data on
    its sockets, but nothing answers, as with a peer that hangs on an open connection;
    `thaw()` lets it go on (SIGCONT).
    """

    def __init__(self, target_port: int, *, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> TcpProxy:
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "-c", _PROXY_SOURCE, str(self.port), str(self.target_port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline() != b"listening\n":  # ends when the process does
            raise RuntimeError(f"the TCP proxy to port {self.target_port} did not start")
        return self

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL ends a stopped process too
            self.process.wait(timeout=10)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
