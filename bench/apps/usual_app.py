"""The usual pattern: the guide's FastAPI app, kept as a benchmark fixture. NOT a model.

Written the way `fastapi-celery-guide.md` writes it: blocking `delay()` and `AsyncResult`
inside `async def` endpoints, and an SSE stream that polls with blocking calls once a
second and sends Python reprs. Only the guide's bugs that stop it from running at all are
avoided: it uses the rendered service's Celery app and tasks (so one worker serves both
apps), and pydantic 2's models.

Run by the benchmark inside the rendered project's environment, with this folder as
uvicorn's `--app-dir`; `BENCH_PACKAGE` names the rendered package (default `my_service`).
"""

import asyncio
import importlib
import os

from celery.result import AsyncResult
from fastapi import FastAPI
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


app = FastAPI(title="usual pattern")


@app.get("/")
async def root():
    return {"status": "ok", "app": "usual pattern"}


@app.post("/api/process", response_model=TaskResponse)
async def submit_task(request: TaskRequest):
    """Submit data processing task to Celery"""
    task = process_data.delay(request.data)
    return TaskResponse(
        task_id=task.id,
        status="queued",
        message=f"Task submitted. Check status at /api/task/{task.id}",
    )


@app.get("/api/task/{task_id}", response_model=TaskStatusResponse)
async def get_task_status(task_id: str):
    """Get Celery task status"""
    task_result = AsyncResult(task_id, app=celery)

    response = TaskStatusResponse(task_id=task_id, status=task_result.state.lower())

    if task_result.state == "PENDING":
        response.result = {"message": "Task pending"}
    elif task_result.state == "PROGRESS":
        response.progress = task_result.info
    elif task_result.state == "SUCCESS":
        response.result = task_result.result
    elif task_result.state == "FAILURE":
        response.result = {"error": str(task_result.info)}

    return response


@app.post("/api/report/{user_id}", response_model=TaskResponse)
async def create_report(user_id: int):
    """Generate report with progress tracking"""
    task = generate_report.delay(user_id)
    return TaskResponse(task_id=task.id, status="processing", message="Report generation started")


@app.get("/api/task/{task_id}/stream")
async def stream_task_status(task_id: str):
    """Stream task progress via SSE"""

    async def event_generator():
        task_result = AsyncResult(task_id, app=celery)

        while not task_result.ready():
            if task_result.state == "PROGRESS":
                yield {"event": "progress", "data": str(task_result.info)}
            await asyncio.sleep(1)

        yield {"event": "complete", "data": str(task_result.result)}

    return EventSourceResponse(event_generator())
