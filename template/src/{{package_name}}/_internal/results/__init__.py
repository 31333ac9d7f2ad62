"""Task state as the API sees it, read from Celery's result backend without blocking."""

from .base import READY_STATES, ResultStore, TaskState
from .factory import create_result_store

__all__ = ["READY_STATES", "ResultStore", "TaskState", "create_result_store"]
