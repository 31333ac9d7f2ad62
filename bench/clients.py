"""Load generators and clients: wrk for throughput, httpx for submits, a lean asyncio reader
for SSE."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.sse import SseParser

# The rendered service's API key (its API_KEYS), sent by every client: the usual app ignores it.
API_KEY = "benchmark-api-key-0123456789abcdef"
AUTHORIZATION = {"Authorization": f"Bearer {API_KEY}"}

# --------------------------------------------------------------------------------------
# wrk


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_post_script(folder: Path, body: dict[str, Any]) -> Path:
    script = folder / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {API_KEY}"\n'
    )
    return script


def wrk_status_script(folder: Path, task_ids: list[str]) -> Path:
    """GET /api/task/{id}, going round a list of ids."""
    script = folder / "status.lua"
    ids = ", ".join(json.dumps(i) for i in task_ids)
    script.write_text(
        f'wrk.headers["Authorization"] = "Bearer {API_KEY}"\n'
        f"local ids = {{{ids}}}\n"
        "local i = 0\n"
        "request = function()\n"
        "    i = i % #ids + 1\n"
        '    return wrk.format("GET", "/api/task/" .. ids[i])\n'
        "end\n"
    )
    return script


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


@dataclass
class WrkResult:
    rps: float
    requests: int
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    output: str

    @property
    def clean(self) -> bool:
        return self.requests > 0 and self.non_2xx == 0 and self.socket_errors == 0


def parse_wrk(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    if rps is None or requests is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return WrkResult(
        rps=float(rps.group(1)),
        requests=int(requests.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        p50_ms=_ms(*p50.groups()) if p50 else float("nan"),
        p99_ms=_ms(*p99.groups()) if p99 else float("nan"),
        output=output,
    )


async def run_wrk(
    url: str, *, seconds: int, connections: int, script: Path | None = None
) -> WrkResult:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script is not None:
        args += ["-s", str(script)]
    process = await asyncio.create_subprocess_exec(
        *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), seconds + 30)
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{text}")
    return parse_wrk(text)


# --------------------------------------------------------------------------------------
# Probe: a trivial request, sequentially, while a load runs


async def probe(client: httpx.AsyncClient, url: str, stop: asyncio.Event) -> list[float]:
    """Latencies (ms) of GET url, one at a time every ~10 ms, until `stop` is set."""
    latencies: list[float] = []
    while not stop.is_set():
        start = time.perf_counter()
        try:
            response = await client.get(url)
            if response.status_code == 200:
                latencies.append(1000 * (time.perf_counter() - start))
        except httpx.HTTPError:
            pass
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.01)
    return latencies


# --------------------------------------------------------------------------------------
# Server-sent events


def progress_current(data: str) -> int | None:
    """`current` of a progress event: JSON (ours) or a Python repr (the usual pattern)."""
    try:
        value = json.loads(data)
    except ValueError:
        try:
            value = ast.literal_eval(data)
        except (ValueError, SyntaxError):
            return None
    if isinstance(value, dict) and isinstance(value.get("current"), int):
        return int(value["current"])
    return None


FINAL_EVENTS = frozenset({"complete", "failure"})


@dataclass
class StreamRecord:
    task_id: str
    opened: bool = False
    status: int | None = None
    progress: dict[int, float] = field(default_factory=dict)  # current -> first arrival
    final: str | None = None
    final_at: float | None = None
    error: str | None = None


class _SseProtocol(asyncio.Protocol):
    """A lean HTTP/1.1 SSE reader (chunked or not), so that the client's own CPU time adds
    as little as possible to what is measured: with 1,000 streams on a small machine, httpx
    costs about as much CPU per event as the server does."""

    def __init__(self, request: bytes, record: StreamRecord, opened: asyncio.Event | None):
        self.request = request
        self.record = record
        self.opened = opened
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.chunked = False
        self.raw = b""  # body bytes not yet de-chunked
        self.chunk_left = -1  # -1: expecting a size line; -2: expecting the CRLF after data
        self.text = b""  # de-chunked SSE text not yet split into lines
        self.parser = SseParser()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.record.status is None:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end].decode("latin-1"), self.head[end + 4 :]
            status_line, *headers = head.split("\r\n")
            self.record.status = int(status_line.split()[1])
            self.chunked = any(
                h.lower().replace(" ", "") == "transfer-encoding:chunked" for h in headers
            )
            self.record.opened = self.record.status == 200
            if self.opened is not None:
                self.opened.set()
            if self.record.status != 200:
                self.record.error = f"HTTP {self.record.status}"
                self._finish()
                return
        if self.chunked:
            self.raw += data
            data = self._dechunk()
        self.text += data
        *lines, self.text = self.text.split(b"\n")
        for line in lines:
            self._line(line.rstrip(b"\r").decode(), now)
            if self.record.final is not None:
                self._finish()
                return

    def _dechunk(self) -> bytes:
        out = []
        raw = self.raw
        while raw:
            if self.chunk_left == -1:
                end = raw.find(b"\r\n")
                if end < 0:
                    break
                self.chunk_left = int(raw[:end].split(b";")[0], 16)
                raw = raw[end + 2 :]
                if self.chunk_left == 0:  # last chunk
                    raw = b""
                    break
            elif self.chunk_left == -2:
                if len(raw) < 2:
                    break
                raw, self.chunk_left = raw[2:], -1
            else:
                piece = raw[: self.chunk_left]
                out.append(piece)
                raw = raw[len(piece) :]
                self.chunk_left -= len(piece)
                if self.chunk_left == 0:
                    self.chunk_left = -2
        self.raw = raw
        return b"".join(out)

    def _line(self, line: str, now: float) -> None:
        event = self.parser.feed(line)
        if event is None:
            return
        if event.event == "progress":
            current = progress_current(event.data)
            if current is not None:
                self.record.progress.setdefault(current, now)
        elif event.event in FINAL_EVENTS:
            self.record.final, self.record.final_at = event.event, now

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.record.final is None and self.record.error is None:
            self.record.error = f"connection closed before a final event ({exc!r})"
        if self.opened is not None:
            self.opened.set()
        if not self.done.done():
            self.done.set_result(None)


async def read_stream(
    url: str, record: StreamRecord, opened: asyncio.Event | None, deadline: float
) -> None:
    """Read one stream until its final event, recording each progress event's arrival."""
    parsed = httpx.URL(url)
    port = parsed.port or 80
    request = (
        f"GET {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{port}\r\n"
        f"Authorization: Bearer {API_KEY}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    protocol = _SseProtocol(request, record, opened)
    try:
        async with asyncio.timeout(deadline):
            await loop.create_connection(lambda: protocol, parsed.host, port)
            await protocol.done
    except TimeoutError:
        record.error = record.error or f"no final event within {deadline:.0f} s"
    except OSError as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        if protocol.transport is not None:
            protocol.transport.close()
        if opened is not None:
            opened.set()


async def submit(client: httpx.AsyncClient, url: str, **kwargs: Any) -> str:
    response = await client.post(url, **kwargs)
    if response.status_code not in (200, 202):
        raise RuntimeError(f"POST {url} -> {response.status_code}: {response.text[:300]}")
    return str(response.json()["task_id"])
