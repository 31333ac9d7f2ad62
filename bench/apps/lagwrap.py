"""Benchmark instrumentation: an ASGI pass-through that measures the event loop's lag.

`uvicorn lagwrap:app --app-dir bench/apps` serves the app named by `BENCH_ASGI_APP`
("module:attribute") unchanged, plus one extra route, `GET /__bench__/lag`. It returns the
loop's lag since the previous call (`lagmonitor.py`; the call resets it), and what the server
runs on (event loop class, HTTP parser), so the report can say so. `GET /__bench__/lag?reset`
only resets.

This wraps every app the same way; every other request goes straight to the wrapped app.
"""

import asyncio
import gc
import importlib
import json
import os
import sys
import time
from typing import Any

from lagmonitor import LagMonitor

LAG_PATH = "/__bench__/lag"

_module, _, _attribute = os.environ["BENCH_ASGI_APP"].partition(":")
inner: Any = getattr(importlib.import_module(_module), _attribute)
monitor = LagMonitor()


class CollectionTimer:
    """The longest garbage collection of each generation since the previous `take()`: a
    collection stops the loop like any callback."""

    def __init__(self) -> None:
        self.started = 0.0
        self.reset()
        gc.callbacks.append(self._on_collection)

    def reset(self) -> None:
        self.longest = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        generation = info["generation"]
        self.counts[generation] += 1
        self.longest[generation] = max(self.longest[generation], time.perf_counter() - self.started)

    def take(self) -> dict[str, Any]:
        figures = {
            "gc_longest_ms": [round(1000 * seconds, 3) for seconds in self.longest],
            "gc_collections": self.counts,
        }
        self.reset()
        return figures


collections = CollectionTimer()


def server_figures() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    return {
        **monitor.take(),
        **collections.take(),
        "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "http": (
            "httptools"
            if "uvicorn.protocols.http.httptools_impl" in sys.modules
            else "h11"
            if "uvicorn.protocols.http.h11_impl" in sys.modules
            else "unknown"
        ),
    }


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    monitor.ensure_started()
    if scope["type"] == "http" and scope["path"] == LAG_PATH:
        if scope["query_string"] == b"reset":
            # Only forgets: figures built here would hold the loop, and the first sample after
            # the reset would count that as lag.
            monitor.reset()
            collections.reset()
            body = b"{}"
        else:
            body = json.dumps(server_figures()).encode()
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
