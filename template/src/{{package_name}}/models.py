"""Request and response bodies."""

from typing import Any, Literal

from pydantic import BaseModel, EmailStr, Field

TaskStatus = Literal["queued", "started", "progress", "retry", "success", "failure", "revoked"]


class TaskRequest(BaseModel):
    data: dict[str, Any]


class EmailRequest(BaseModel):
    to: EmailStr
    subject: str = Field(min_length=1, max_length=998)
    body: str


class TaskAccepted(BaseModel):
    task_id: str
    status: TaskStatus = "queued"
    message: str


class TaskStatusResponse(BaseModel):
    task_id: str
    status: TaskStatus
    result: Any = None
    progress: dict[str, Any] | None = None
    error: str | None = None


class LogAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    message: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    app: str | None = None


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    broker: str
    result_backend: str
