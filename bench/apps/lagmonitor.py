"""Event-loop lag: a task sleeps `PERIOD` seconds in a loop and records how late it wakes up.

A callback that blocks the loop for 20 ms shows as a ~20 ms late wake-up. `lagwrap.py` runs
one inside each API process. Run as a script, `python lagmonitor.py SECONDS` runs one in an
otherwise idle process for SECONDS and prints its figures as JSON: the lag that the machine
alone (other processes, the hypervisor) causes, next to which the API's can be read.

Each sample keeps when its sleep began (`time.monotonic()`, one clock for every process on
Linux), so the benchmark can tell the API's late wake-ups that overlap the idle process's.
"""

import asyncio
import json
import sys
import time
from typing import Any

PERIOD = 0.002  # seconds between wake-ups: ~500 per second, a negligible load


class LagMonitor:
    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (sleep began, lag), seconds
        self.task: asyncio.Task[None] | None = None

    def ensure_started(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(PERIOD)
            lag = time.monotonic() - start - PERIOD
            if len(self.samples) < 1_000_000:
                self.samples.append((start, lag))

    def reset(self) -> None:
        self.samples = []

    def take(self) -> dict[str, Any]:
        """The lag since the previous call (which it resets), in ms, and every sample as
        [sleep began (s), its end (s), lag (ms)]."""
        timed = self.samples
        self.reset()
        samples = sorted(lag for _, lag in timed)
        n = len(samples)

        def pct(q: float) -> float:
            return round(1000 * samples[min(n - 1, int(q * n))], 3) if n else 0.0

        return {
            "samples": n,
            "max_ms": round(1000 * samples[-1], 3) if n else 0.0,
            "p99_ms": pct(0.99),
            "p50_ms": pct(0.50),
            "windows": [
                [round(start, 6), round(start + PERIOD + lag, 6), round(1000 * lag, 3)]
                for start, lag in timed
            ],
        }


async def _idle(seconds: float) -> dict[str, Any]:
    monitor = LagMonitor()
    monitor.ensure_started()
    await asyncio.sleep(seconds)
    return monitor.take()


if __name__ == "__main__":
    try:  # the loop the API runs on, where the service has it
        import uvloop

        print(json.dumps(uvloop.run(_idle(float(sys.argv[1])))))
    except ImportError:
        print(json.dumps(asyncio.run(_idle(float(sys.argv[1])))))
