"""Task messages that the worker cannot run, failed before they reach its pool.

The worker decodes each task message, then pickles its arguments to hand them to a pool
process, recursing at each level of nesting. A RecursionError there is raised in the worker's
main process and stops the worker; the message is then delivered again, to the next worker,
which stops too, with the task still reading queued. The API refuses data nested that deep
(limits.py), but anything can publish to the broker. So each message is checked first: one
that is nested deeper than MAX_MESSAGE_DEPTH, or too deep to decode, is recorded as a failure
(PoisonMessageError) and rejected, for a broker that keeps rejected messages to keep, and the
worker goes on with the next one.
"""

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.utils.imports import symbol_by_name
from celery.worker.strategy import default
from kombu.exceptions import DecodeError

from .limits import MAX_MESSAGE_DEPTH, json_limit_error

logger = logging.getLogger(__name__)


class PoisonMessageError(Exception):
    """A task message that the worker cannot run."""


def guarded_strategy(task: Task, app: Celery, consumer: Any, **options: Any) -> Callable[..., None]:
    """Celery's default strategy (how a worker handles a task's messages), with the message's
    depth checked before it is handed on."""
    handle = default(task, app, consumer, **options)
    request_cls = symbol_by_name(task.Request)

    def fail(message: Any, ack: Any, reject: Any, problem: str, decoded: bool) -> None:
        task_id = message.headers.get("id") if isinstance(message.headers, dict) else None
        logger.error("Task %s[%s] refused before it ran: %s", task.name, task_id, problem)
        error = PoisonMessageError(f"The task message cannot be run: {problem}")
        if decoded:
            # As Celery fails a message whose ETA it cannot read; the request's context carries
            # a chain's later steps, which fail with it.
            request = request_cls(
                message,
                on_ack=ack,
                on_reject=reject,
                app=app,
                hostname=consumer.hostname,
                eventer=consumer.event_dispatcher,
                task=task,
                connection_errors=consumer.connection_errors,
            )
            task.backend.mark_as_failure(
                request.id, error, request=request._context, store_result=request.store_errors
            )
            request.reject(requeue=False)
            return
        if task_id is not None:
            task.backend.mark_as_failure(task_id, error)
        reject(logger, consumer.connection_errors, False)

    def task_message_handler(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **handler_options: Any
    ) -> None:
        try:
            # Protocol 2 leaves `body` None here; the message keeps what it decodes.
            payload = message.payload if body is None else body
        except DecodeError as exc:
            # kombu raises DecodeError while handling the decoder's own error.
            if not isinstance(exc.__context__, RecursionError):
                raise  # Celery logs it and drops the message, as before
            fail(message, ack, reject, "it is nested too deep to decode", decoded=False)
            return
        error = json_limit_error(payload, max_depth=MAX_MESSAGE_DEPTH, check_strings=False)
        if error is not None:
            fail(message, ack, reject, f"its arguments are {error.message}", decoded=True)
            return
        handle(message, body, ack, reject, callbacks, **handler_options)

    return task_message_handler


class GuardedTask(Task):  # type: ignore[misc,unused-ignore]  # Celery ships no types
    """The base of the service's tasks: their messages go through `guarded_strategy`."""

    Strategy = f"{__name__}:guarded_strategy"
