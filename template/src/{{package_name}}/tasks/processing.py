"""Data processing tasks: sync, async, with progress, and a three-step workflow.

To add a task: a function decorated with `@celery_app.task` here, or in a new module of
`tasks/` (the worker imports every one); an endpoint submits it with `Submitter`.
"""

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from celery import Task

from .._internal import worker_loop
from ..celery_app import celery_app
from ..config import get_settings

JSONDict = dict[str, Any]

logger = logging.getLogger(__name__)


def checksum(value: object) -> str:
    """SHA-256 of the canonical JSON form: equal data, equal checksum."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def summarize(data: JSONDict) -> JSONDict:
    return {"keys": sorted(data), "item_count": len(data), "checksum": checksum(data)}


@celery_app.task
def process_data(data: JSONDict) -> JSONDict:
    """Summarise a JSON object. Pure, so a redelivered task gives the same result."""
    return summarize(data)


async def _field_checksum(key: str, value: object) -> tuple[str, str]:
    # Stands for real async I/O (an HTTP call, a database query): yield to the loop first.
    await asyncio.sleep(0)
    return key, checksum(value)


async def summarize_async(data: JSONDict) -> JSONDict:
    fields = await asyncio.gather(*(_field_checksum(k, v) for k, v in data.items()))
    return {**summarize(data), "field_checksums": dict(fields), "async": True}


@celery_app.task
def async_process_data(data: JSONDict) -> JSONDict:
    """Run async code on the worker process's own event loop (see worker_loop)."""
    return worker_loop.run(summarize_async(data))


def _report_section(user_id: int, step: int) -> JSONDict:
    rows = [{"user_id": user_id, "section": step, "row": row} for row in range(100)]
    return {"section": step, "rows": len(rows), "checksum": checksum(rows)}


def _report_progress(task: Task, step: int, total: int) -> None:
    """Progress only informs: a write the result backend still refuses after its retries is
    logged, and the task goes on (its result is stored, and retried, on its own)."""
    try:
        task.update_state(
            state="PROGRESS",
            meta={"current": step, "total": total, "percent": round(100 * step / total)},
        )
    except Exception as exc:  # each backend has its own errors
        logger.warning("Progress of task %s not stored: %r", task.request.id, exc)


@celery_app.task(bind=True)
def generate_report(self: Task, user_id: int) -> JSONDict:
    """Build a report section by section, reporting progress after each one."""
    settings = get_settings()
    total = settings.report_steps
    sections = []
    for step in range(1, total + 1):
        sections.append(_report_section(user_id, step))
        _report_progress(self, step, total)
        time.sleep(settings.report_step_delay_seconds)
    return {"user_id": user_id, "sections": total, "checksum": checksum(sections)}


@celery_app.task
def validate_payload(data: JSONDict) -> JSONDict:
    """Workflow step 1: refuse empty payloads and keys that are blank."""
    if not data:
        raise ValueError("data must not be empty")
    blank = [key for key in data if not key.strip()]
    if blank:
        raise ValueError("data keys must not be blank")
    return {"data": data, "steps": ["validate"]}


@celery_app.task
def transform_payload(payload: JSONDict) -> JSONDict:
    """Workflow step 2: normalise keys to stripped lower case."""
    data = {key.strip().lower(): value for key, value in payload["data"].items()}
    return {"data": data, "steps": [*payload["steps"], "transform"]}


@celery_app.task
def summarize_payload(payload: JSONDict) -> JSONDict:
    """Workflow step 3: summarise the normalised data."""
    return {**summarize(payload["data"]), "steps": [*payload["steps"], "summarize"]}
