"""Benchmark instrumentation: an ASGI pass-through that measures the event loop's lag.

`uvicorn lagwrap:app --app-dir bench/apps` serves the app named by `BENCH_ASGI_APP`
("module:attribute") unchanged, plus one extra route, `GET /__bench__/lag`. A background
task sleeps `PERIOD` seconds in a loop and records how late it wakes up: the loop's lag
(a callback that blocks the loop for 20 ms shows as a ~20 ms late wake-up). The route
returns the lag since the previous call (and resets it), and what the server runs on
(event loop class, HTTP parser), so the report can say so.

This wraps both apps the same way; every other request goes straight to the wrapped app.
"""

import asyncio
import importlib
import json
import os
import sys
import time
from typing import Any

PERIOD = 0.002  # seconds between wake-ups: ~500 per second, a negligible load
LAG_PATH = "/__bench__/lag"

_module, _, _attribute = os.environ["BENCH_ASGI_APP"].partition(":")
inner: Any = getattr(importlib.import_module(_module), _attribute)


class LagMonitor:
    def __init__(self) -> None:
        self.samples: list[float] = []
        self.task: asyncio.Task[None] | None = None

    def ensure_started(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(PERIOD)
            lag = time.perf_counter() - start - PERIOD
            if len(self.samples) < 1_000_000:
                self.samples.append(lag)

    def take(self) -> dict[str, Any]:
        samples, self.samples = sorted(self.samples), []
        n = len(samples)

        def pct(q: float) -> float:
            return round(1000 * samples[min(n - 1, int(q * n))], 3) if n else 0.0

        loop = asyncio.get_running_loop()
        return {
            "samples": n,
            "max_ms": round(1000 * samples[-1], 3) if n else 0.0,
            "p99_ms": pct(0.99),
            "p50_ms": pct(0.50),
            "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
            "http": (
                "httptools"
                if "uvicorn.protocols.http.httptools_impl" in sys.modules
                else "h11"
                if "uvicorn.protocols.http.h11_impl" in sys.modules
                else "unknown"
            ),
        }


monitor = LagMonitor()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    monitor.ensure_started()
    if scope["type"] == "http" and scope["path"] == LAG_PATH:
        body = json.dumps(monitor.take()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    await inner(scope, receive, send)
