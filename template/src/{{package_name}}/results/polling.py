"""A store for result backends without pub/sub: reads through Celery's backend, in threads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from anyio import to_thread
from celery import Celery

from .base import QUEUED, TaskState

_PENDING = "PENDING"


class PollingResultStore:
    def __init__(self, celery_app: Celery, *, poll_interval: float) -> None:
        self._app = celery_app
        self._poll_interval = poll_interval

    # Celery's backend objects are per thread: each call takes the current thread's one.
    def _store_queued(self, task_id: str) -> None:
        self._app.backend.store_result(task_id, None, QUEUED)

    def _forget(self, task_id: str) -> None:
        self._app.backend.forget(task_id)

    def _read(self, task_id: str) -> dict[str, Any]:
        meta: dict[str, Any] = self._app.backend.get_task_meta(task_id, cache=False)
        return meta

    async def mark_queued(self, task_id: str) -> None:
        await to_thread.run_sync(self._store_queued, task_id)

    async def discard(self, task_id: str) -> None:
        await to_thread.run_sync(self._forget, task_id)

    async def get(self, task_id: str) -> TaskState | None:
        meta = await to_thread.run_sync(self._read, task_id)
        # Every submitted task has a record, so PENDING (no record) means unknown.
        return None if meta.get("status") == _PENDING else TaskState.from_meta(meta)

    async def watch(self, task_id: str) -> AsyncGenerator[TaskState | None, None]:
        state = await self.get(task_id)
        yield state
        while state is not None and not state.ready:
            await asyncio.sleep(self._poll_interval)
            current = await self.get(task_id)
            if current != state:
                state = current
                yield state

    async def ping(self) -> None:
        await to_thread.run_sync(self._read, "health-check")

    async def aclose(self) -> None:
        return None
