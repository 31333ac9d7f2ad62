"""The task endpoints: submit work, read a task's status, cancel it.

To add an endpoint here: a function decorated with `@router.post(...)` (or `.get`, ...);
submit a task through the `Submitter` dependency and answer `queued(task_id, ...)` from
`_shared.py`. Another feature gets a module of its own in `routers/`, with its own `router`.
"""

import logging
from typing import Annotated, Any

from anyio import to_thread
from celery import chain
from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, status
from kombu.exceptions import OperationalError

from .._internal.results import ResultStore, TaskState
from .._internal.submit import ServiceUnavailableError, backend_errors_as_unavailable
from .._internal.task_status import status_body
from ..celery_app import celery_app
from ..dependencies import Store, Submitter
from ..models import LogAccepted, TaskAccepted, TaskRequest, TaskStatusResponse
from ..tasks.processing import (
    async_process_data,
    generate_report,
    process_data,
    summarize_payload,
    transform_payload,
    validate_payload,
)
from ._shared import JSON_BODY_ERRORS, NOT_FOUND, TaskId, queued

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api", tags=["tasks"])


async def read_state(store: ResultStore, task_id: str) -> TaskState:
    """The task's stored state: 404 for an id never submitted (or expired), 503 when the result
    backend cannot be read."""
    with backend_errors_as_unavailable():
        state = await store.get(task_id)
    if state is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No task with id {task_id}")
    return state


def log_request(data: dict[str, Any]) -> None:
    logger.info("Request logged: %d field(s): %s", len(data), sorted(data))


@router.post("/process", status_code=status.HTTP_202_ACCEPTED, openapi_extra=JSON_BODY_ERRORS)
async def submit_process(request: TaskRequest, submitter: Submitter) -> TaskAccepted:
    task_id = await submitter.submit(process_data.s(request.data))
    return queued(task_id, "Processing")


@router.post("/async-process", status_code=status.HTTP_202_ACCEPTED, openapi_extra=JSON_BODY_ERRORS)
async def submit_async_process(request: TaskRequest, submitter: Submitter) -> TaskAccepted:
    task_id = await submitter.submit(async_process_data.s(request.data))
    return queued(task_id, "Async processing")


@router.post("/report/{user_id}", status_code=status.HTTP_202_ACCEPTED)
async def submit_report(user_id: Annotated[int, Path(ge=1)], submitter: Submitter) -> TaskAccepted:
    task_id = await submitter.submit(generate_report.s(user_id))
    return queued(task_id, "Report")


@router.post("/combined", status_code=status.HTTP_202_ACCEPTED, openapi_extra=JSON_BODY_ERRORS)
async def submit_combined(
    request: TaskRequest, background_tasks: BackgroundTasks, submitter: Submitter
) -> TaskAccepted:
    """Quick logging in-process after the response, heavy processing in Celery."""
    task_id = await submitter.submit(process_data.s(request.data))
    background_tasks.add_task(log_request, request.data)
    return queued(task_id, "Processing")


@router.post("/workflow", status_code=status.HTTP_202_ACCEPTED, openapi_extra=JSON_BODY_ERRORS)
async def submit_workflow(request: TaskRequest, submitter: Submitter) -> TaskAccepted:
    """Validate, transform and summarise, chained: the returned id is the final step's."""
    workflow = chain(validate_payload.s(request.data), transform_payload.s(), summarize_payload.s())
    task_id = await submitter.submit(workflow)
    return queued(task_id, "Workflow")


@router.post("/quick-log", status_code=status.HTTP_202_ACCEPTED, openapi_extra=JSON_BODY_ERRORS)
async def quick_log(request: TaskRequest, background_tasks: BackgroundTasks) -> LogAccepted:
    """Work too small for Celery runs in this process, after the response is sent."""
    background_tasks.add_task(log_request, request.data)
    return LogAccepted(message="Request will be logged")


@router.get("/task/{task_id}", responses=NOT_FOUND)
async def get_task_status(task_id: TaskId, store: Store) -> TaskStatusResponse:
    return status_body(task_id, await read_state(store, task_id))


def _revoke(task_id: str) -> None:
    celery_app.control.revoke(task_id, terminate=True, signal="SIGTERM")
    # Recorded here as well, so the task reads revoked even before a worker sees it.
    celery_app.backend.mark_as_revoked(task_id, reason="cancelled by request")


@router.delete(
    "/task/{task_id}",
    status_code=status.HTTP_202_ACCEPTED,
    responses={**NOT_FOUND, status.HTTP_409_CONFLICT: {"description": "Already finished"}},
)
async def cancel_task(task_id: TaskId, store: Store) -> TaskAccepted:
    """Revoke a task, and terminate it if it is running."""
    state = await read_state(store, task_id)
    if state.ready:
        raise HTTPException(status.HTTP_409_CONFLICT, f"Task {task_id} has already finished")
    try:
        await to_thread.run_sync(_revoke, task_id)
    except (OperationalError, OSError) as exc:
        raise ServiceUnavailableError("The task broker is unreachable; try again later") from exc
    return TaskAccepted(task_id=task_id, status="revoked", message="Task cancelled")
