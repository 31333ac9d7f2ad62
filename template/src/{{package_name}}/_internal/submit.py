"""Submitting tasks from the API without blocking the event loop or losing track of them."""

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

from celery.canvas import Signature

from .publishing import BrokerUnavailableError, Publisher
from .results import ResultStore

BACKEND_UNREACHABLE = "The result backend is unreachable"


class ServiceUnavailableError(Exception):
    """The broker or the result backend cannot be reached."""


@contextmanager
def backend_errors_as_unavailable() -> Iterator[None]:
    """Any error from the result backend becomes a ServiceUnavailableError (a 503): each
    backend has its own connection errors."""
    try:
        yield
    except Exception as exc:
        raise ServiceUnavailableError(BACKEND_UNREACHABLE) from exc


class TaskSubmitter:
    def __init__(self, store: ResultStore, publisher: Publisher) -> None:
        self._store = store
        self._publisher = publisher

    async def submit(self, signature: Signature) -> str:
        """Record the task as queued, publish it, and return its id.

        The record comes first so that a worker's STARTED can never be overwritten by it; if the
        publish fails the record is removed, so no task is left reading "queued" for ever.
        """
        task_id = str(uuid4())
        with backend_errors_as_unavailable():
            await self._store.mark_queued(task_id)
        try:
            await self._publisher.publish(signature, task_id)
        except BrokerUnavailableError as exc:
            await self._store.discard(task_id)
            raise ServiceUnavailableError(
                "The task broker is unreachable; try again later"
            ) from exc
        return task_id
