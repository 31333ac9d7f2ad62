from urllib.parse import urlsplit

from celery import Celery

from ..config import Settings
from .base import ResultStore
from .polling import PollingResultStore
from .redis import RedisResultStore

_PUBSUB_SCHEMES = frozenset({"redis", "rediss"})


def create_result_store(celery_app: Celery, settings: Settings) -> ResultStore:
    """Redis gets reads with pub/sub pushes; any other backend is read through Celery, polled."""
    if urlsplit(settings.celery_result_backend).scheme in _PUBSUB_SCHEMES:
        return RedisResultStore(
            url=settings.celery_result_backend,
            backend=celery_app.backend,
            expires_seconds=settings.result_expires_seconds,
            socket_timeout=settings.broker_socket_timeout_seconds,
        )
    return PollingResultStore(celery_app, poll_interval=settings.result_poll_interval_seconds)
