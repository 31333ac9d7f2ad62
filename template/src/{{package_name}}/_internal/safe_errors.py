"""Failures stored as the exception's type and a one-line message: no arguments, no traceback.

Celery stores a failed task's exception arguments, which can hold the task's own arguments (a
UnicodeEncodeError carries the whole string it failed on), and its full traceback, for anyone
who reads the result backend. The worker's log keeps the traceback; the result backend gets
`{"exc_type", "exc_message": [one line]}` and no traceback. A task's own
exception messages are stored as written: keep secrets out of them.
"""

from functools import cache
from typing import Any

from celery.backends.base import Backend
from celery.exceptions import Retry

from .limits import printable

MAX_MESSAGE_CHARS = 500


def safe_message(exc: BaseException) -> str:
    """str(exc) on one line, encodable, at most MAX_MESSAGE_CHARS long."""
    text = printable(" ".join(str(exc).split()))
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


class SafeFailures(Backend):  # type: ignore[misc,unused-ignore]  # Celery ships no types
    """Mixed in before a result backend class (see `with_safe_failures`)."""

    def prepare_exception(self, exc: BaseException, serializer: str | None = None) -> Any:
        if isinstance(exc, Retry):  # its arguments are its cause's one-line repr and its delay
            return super().prepare_exception(exc, serializer)
        # No module: Celery, reading it back, makes an exception class of that name, which
        # takes the one message (the real class may need other arguments).
        return {
            "exc_type": type(exc).__qualname__,
            "exc_message": [safe_message(exc)],
            "exc_module": None,
        }

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **options: Any,
    ) -> Any:
        return super().store_result(task_id, result, state, None, request, **options)


@cache
def with_safe_failures(backend_cls: type[Any]) -> type[Any]:
    """`backend_cls` (Celery's class for the configured result backend), storing failures
    without their arguments and traceback."""
    return type(backend_cls.__name__, (SafeFailures, backend_cls), {})
