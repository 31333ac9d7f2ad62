"""Publishing tasks from the API without blocking the event loop or losing track of them."""

from uuid import uuid4

from anyio import to_thread
from celery.canvas import Signature
from kombu.exceptions import OperationalError

from .results import ResultStore


class ServiceUnavailableError(Exception):
    """The broker or the result backend cannot be reached."""


class TaskSubmitter:
    def __init__(self, store: ResultStore) -> None:
        self._store = store

    async def submit(self, signature: Signature) -> str:
        """Record the task as queued, publish it, and return its id.

        The record comes first so that a worker's STARTED can never be overwritten by it; if the
        publish fails the record is removed, so no task is left reading "queued" for ever.
        """
        task_id = str(uuid4())
        try:
            await self._store.mark_queued(task_id)
        except Exception as exc:  # each backend has its own connection errors
            raise ServiceUnavailableError("The result backend is unreachable") from exc
        try:
            await to_thread.run_sync(_publish, signature, task_id)
        except (OperationalError, OSError) as exc:
            await self._store.discard(task_id)
            raise ServiceUnavailableError(
                "The task broker is unreachable; try again later"
            ) from exc
        return task_id


def _publish(signature: Signature, task_id: str) -> None:
    # The AsyncResult is dropped here, in the worker thread, with any clean-up it does.
    signature.apply_async(task_id=task_id)
