from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

# Celery has no "queued" state: the API writes this one before it publishes a task, so that a
# submitted task can be told apart from an id that was never submitted (both read PENDING).
QUEUED = "QUEUED"
READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


@dataclass(frozen=True)
class TaskState:
    """One stored state of a task: Celery's meta, minus traceback and arguments."""

    state: str
    result: Any = None

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> TaskState:
        result = meta.get("result")
        if isinstance(result, BaseException):
            # Backends read through Celery rebuild the exception; keep the stored JSON shape.
            result = {"exc_type": type(result).__name__, "exc_message": list(result.args)}
        return cls(state=str(meta.get("status")), result=result)

    @classmethod
    def decode(cls, payload: bytes | str) -> TaskState:
        meta: dict[str, Any] = json.loads(payload)
        return cls.from_meta(meta)


def queued_meta(task_id: str) -> dict[str, Any]:
    """A queued record, in the same shape as the records Celery stores."""
    return {
        "status": QUEUED,
        "result": None,
        "traceback": None,
        "children": [],
        "date_done": None,
        "task_id": task_id,
    }


class ResultStore(Protocol):
    async def mark_queued(self, task_id: str) -> None:
        """Record a task as queued, before it is published."""

    async def discard(self, task_id: str) -> None:
        """Remove the record of a task that could not be published."""

    async def get(self, task_id: str) -> TaskState | None:
        """The task's current state, or None if it was never submitted (or has expired)."""

    def watch(self, task_id: str) -> AsyncGenerator[TaskState | None, None]:
        """Yield the current state (None if unknown), then each change until a ready state."""

    async def ping(self) -> None:
        """Raise if the backend cannot be reached."""

    async def aclose(self) -> None:
        """Release connections."""
