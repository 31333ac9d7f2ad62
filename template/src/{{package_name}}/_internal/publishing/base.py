from typing import Protocol

from anyio import to_thread
from celery.canvas import Signature
from kombu.exceptions import OperationalError


class BrokerUnavailableError(Exception):
    """The broker could not be reached: the task was not published."""


class Publisher(Protocol):
    async def publish(self, signature: Signature, task_id: str) -> None:
        """Publish the signature under the given task id, or raise BrokerUnavailableError."""

    async def aclose(self) -> None:
        """Release connections."""


class CeleryPublisher:
    """Celery's own `apply_async`, which blocks on the broker, in a worker thread."""

    async def publish(self, signature: Signature, task_id: str) -> None:
        try:
            await to_thread.run_sync(_apply_async, signature, task_id)
        except (OperationalError, OSError) as exc:
            raise BrokerUnavailableError("The task broker is unreachable") from exc

    async def aclose(self) -> None:
        pass


def _apply_async(signature: Signature, task_id: str) -> None:
    # The AsyncResult is dropped here, in the worker thread, with any clean-up it does.
    signature.apply_async(task_id=task_id)
