"""Server-sent events: parsing a text/event-stream and reading one as a client does.

- `SseParser`: events from the lines of a stream, fed one at a time.
- `read_sse()`: the events of a stream, with an overall deadline;
  `read_sse_in_background()` reads one in a thread, open before the caller goes on;
  `follow_like_event_source()` reconnects with Last-Event-ID, as a browser does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import httpx


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
