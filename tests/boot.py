"""Helpers the boot tests use to talk to a booted service and to the services around it.

(The processes, ports and Redis servers are in `harness/processes.py`, server-sent events
in `harness/sse.py`: the benchmark uses them too.)

- `BOOT_API_KEY` / `api_headers(variant)`: the API key booted services accept, and the
  headers that send it (none with api_auth=none).
- `wait_for_task()`: poll a task's status until it is one of some states.
- `publish_raw_task()`: a task message published past the API, its arguments as given.
- `SmtpSink`: an SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message.
- `WebhookReceiver`: an HTTP server on 127.0.0.1 that records every request.
- `store_task_states()`: task states written through the service's own Celery backend.
- `variant_backends(variant)`: a broker and a result backend of their own for one booted
  variant (Redis databases, a RabbitMQ vhost, a PostgreSQL database), with `ResultRecords`
  to look into the result store.
- `TcpProxy`: a TCP proxy in a process of its own, to freeze (SIGSTOP) for outages.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx

from harness.processes import free_port, redis_databases
from harness.rendering import RenderedProject, project_env
from harness.services import (
    REDIS_HOST,
    REDIS_PORT,
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
