"""Logging that stays readable when the same error repeats many times a second."""

import logging
import time


class RateLimitFilter(logging.Filter):
    """Passes the first record of each message, then at most one every `interval_seconds`,
    saying how many it held back since, each on one line with its error and no traceback: a
    retry loop logs an outage, not every attempt."""

    def __init__(self, interval_seconds: float) -> None:
        super().__init__()
        self._interval_seconds = interval_seconds
        self._passed_at: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        now = time.monotonic()
        passed_at = self._passed_at.get(key)
        if passed_at is not None and now - passed_at < self._interval_seconds:
            self._held_back[key] = self._held_back.get(key, 0) + 1
            return False
        self._passed_at[key] = now
        held_back = self._held_back.pop(key, 0)
        if held_back:
            record.msg = f"{record.msg} ({held_back} more like this not logged)"
        if record.exc_info and record.exc_info[1] is not None:
            # The error on the same line, without the traceback (tens of lines, every time).
            record.msg = f"{record.msg}: {record.exc_info[1]!r}"
            record.exc_info = None
            record.exc_text = None
        return True
