"""Requests start only while the event loop's current turn has time left.

Under load one turn of the loop finds many requests ready, and asyncio runs them all before it
looks at its timers and sockets again: 32 requests of ~150 µs each hold the loop for ~5 ms, and
every timer (deadlines, SSE keep-alives) fires that late. Here a request that would start after
the turn has spent `budget_seconds` on others waits for the next turn, in arrival order. At least
one request starts in every turn, and light load never waits.
"""

import asyncio
import time

from starlette.types import ASGIApp, Receive, Scope, Send


class TurnBudgetMiddleware:
    def __init__(self, app: ASGIApp, *, budget_seconds: float = 0.001) -> None:
        self.app = app
        self.budget_seconds = budget_seconds
        self._turn_started_at: float | None = None
        self._turn_loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._wait_for_turn()
        await self.app(scope, receive, send)

    async def _wait_for_turn(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = time.perf_counter()
            # Another loop's turn (tests run one loop after another) never ends on this one.
            if self._turn_started_at is None or self._turn_loop is not loop:
                self._turn_started_at, self._turn_loop = now, loop
                # Scheduled now, it runs at the start of the next turn's callbacks, ahead of
                # the requests that wait for that turn.
                loop.call_soon(self._end_turn)
                return
            if now - self._turn_started_at < self.budget_seconds:
                return
            await asyncio.sleep(0)

    def _end_turn(self) -> None:
        self._turn_started_at = None
