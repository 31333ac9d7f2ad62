"""Turning a stored Celery state into the API's status body."""

from typing import Any

from ..models import TaskStatus, TaskStatusResponse
from .results import TaskState

_STATUS_BY_STATE: dict[str, TaskStatus] = {
    "QUEUED": "queued",
    "PENDING": "queued",
    "RECEIVED": "queued",
    "STARTED": "started",
    "PROGRESS": "progress",
    "RETRY": "retry",
    "SUCCESS": "success",
    "FAILURE": "failure",
    "REVOKED": "revoked",
}


def _describe_retry(arguments: Any) -> str:
    """Celery's Retry stores itself as its first argument, so only a recursive repr is left of
    its message; its other arguments are the cause's repr and the delay."""
    if not isinstance(arguments, list | tuple):
        arguments = ()
    _, cause, when = [*arguments, None, None, None][:3]
    text = "Retry: the task will run again"
    if when is not None:
        text += f" in {when} s" if isinstance(when, int | float) else f" at {when}"
    return f"{text} after {cause}" if cause else text


def describe_error(result: Any) -> str:
    """A one-line error from Celery's stored exception, without its traceback."""
    if isinstance(result, dict) and result.get("exc_type") == "Retry":
        return _describe_retry(result.get("exc_message"))
    if isinstance(result, dict) and "exc_type" in result:
        message = result.get("exc_message")
        if isinstance(message, list | tuple):
            message = " ".join(str(part) for part in message)
        return f"{result['exc_type']}: {message}" if message else str(result["exc_type"])
    return str(result)


def status_body(task_id: str, state: TaskState) -> TaskStatusResponse:
    status = _STATUS_BY_STATE.get(state.state, "started")
    body = TaskStatusResponse(task_id=task_id, status=status)
    if status == "success":
        body.result = state.result
    elif status == "progress" and isinstance(state.result, dict):
        body.progress = state.result
    elif status in ("failure", "retry", "revoked"):
        body.error = describe_error(state.result)
    return body
