from typing import Protocol

from anyio import fail_after, to_thread
from celery.canvas import Signature
from kombu.exceptions import OperationalError


class BrokerUnavailableError(Exception):
    """The broker could not be reached: the task was not published, or not confirmed."""


class Publisher(Protocol):
    async def publish(self, signature: Signature, task_id: str) -> None:
        """Publish the signature under the given task id, or raise BrokerUnavailableError."""

    async def aclose(self) -> None:
        """Release connections."""


class CeleryPublisher:
    """Celery's own `apply_async`, which blocks on the broker, in a worker thread.

    The request waits at most `deadline_seconds`. A broker that stops answering on an open
    connection makes kombu time out the publish (or its confirm), close the connection and try
    a new one, each bounded by the socket timeouts: the thread ends by itself a little later,
    and the next publish gets a fresh connection.
    """

    def __init__(self, deadline_seconds: float) -> None:
        self._deadline_seconds = deadline_seconds

    async def publish(self, signature: Signature, task_id: str) -> None:
        try:
            with fail_after(self._deadline_seconds):
                await to_thread.run_sync(_apply_async, signature, task_id, abandon_on_cancel=True)
        except (OperationalError, OSError, TimeoutError) as exc:
            raise BrokerUnavailableError("The task broker is unreachable") from exc

    async def aclose(self) -> None:
        pass


def _apply_async(signature: Signature, task_id: str) -> None:
    # The AsyncResult is dropped here, in the worker thread, with any clean-up it does.
    signature.apply_async(task_id=task_id)
