"""The careful pattern: the guide's FastAPI app with its blocking Celery calls moved to threads.

What a careful engineer writes without the template: the usual pattern's endpoints
(`usual_app.py`), but `delay()` and every `AsyncResult` read run in a worker thread
(`run_in_threadpool`), so the event loop never waits on the broker or the result backend.
The stream still polls once a second, as the guide's does. Kept as a benchmark fixture.

Run by the benchmark inside the rendered project's environment, with this folder as
uvicorn's `--app-dir`; `BENCH_PACKAGE` names the rendered package (default `my_service`).
"""

import asyncio
import importlib
import os

from celery.result import AsyncResult
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse

_package = os.environ.get("BENCH_PACKAGE", "my_service")
celery = importlib.import_module(f"{_package}.celery_app").celery_app
_tasks = importlib.import_module(f"{_package}.tasks.processing")
process_data = _tasks.process_data
generate_report = _tasks.generate_report


class TaskRequest(BaseModel):
    data: dict


class TaskResponse(BaseModel):
    task_id: str
    status: str
    message: str


class TaskStatusResponse(BaseModel):
    task_id: str
    status: str
    result: dict | None = None
    progress: dict | None = None


app = FastAPI(title="careful pattern")


def _read_state(task_id: str):
    """State and info of a task, read in one go (each AsyncResult property reads again)."""
    task_result = AsyncResult(task_id, app=celery)
    state = task_result.state
    return state, task_result.info


@app.get("/")
async def root():
    return {"status": "ok", "app": "careful pattern"}


@app.post("/api/process", response_model=TaskResponse)
async def submit_task(request: TaskRequest):
    """Submit data processing task to Celery"""
    task = await run_in_threadpool(process_data.delay, request.data)
    return TaskResponse(
        task_id=task.id,
        status="queued",
        message=f"Task submitted. Check status at /api/task/{task.id}",
    )


@app.get("/api/task/{task_id}", response_model=TaskStatusResponse)
async def get_task_status(task_id: str):
    """Get Celery task status"""
    state, info = await run_in_threadpool(_read_state, task_id)

    response = TaskStatusResponse(task_id=task_id, status=state.lower())

    if state == "PENDING":
        response.result = {"message": "Task pending"}
    elif state == "PROGRESS":
        response.progress = info
    elif state == "SUCCESS":
        response.result = info
    elif state == "FAILURE":
        response.result = {"error": str(info)}

    return response


@app.post("/api/report/{user_id}", response_model=TaskResponse)
async def create_report(user_id: int):
    """Generate report with progress tracking"""
    task = await run_in_threadpool(generate_report.delay, user_id)
    return TaskResponse(task_id=task.id, status="processing", message="Report generation started")


@app.get("/api/task/{task_id}/stream")
async def stream_task_status(task_id: str):
    """Stream task progress via SSE"""

    async def event_generator():
        while True:
            state, info = await run_in_threadpool(_read_state, task_id)
            if state in ("SUCCESS", "FAILURE", "REVOKED"):
                break
            if state == "PROGRESS":
                yield {"event": "progress", "data": str(info)}
            await asyncio.sleep(1)

        yield {"event": "complete", "data": str(info)}

    return EventSourceResponse(event_generator())
