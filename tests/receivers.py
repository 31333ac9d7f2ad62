"""What a booted service sends out, received on 127.0.0.1 and kept for the tests to read.

- `SmtpSink`: an SMTP server (aiosmtpd) that keeps every message (and refuses some).
- `WebhookReceiver`: an HTTP server that records every request.
- `wait_for_recorded()`: the first recorded item that matches, within a deadline.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from harness.processes import free_port

T = TypeVar("T")


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
