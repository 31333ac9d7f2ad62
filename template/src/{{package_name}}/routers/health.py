"""Liveness and readiness probes, for orchestrators and load balancers.

Your endpoints go in a module of their own in `routers/` (as `tasks.py`), not here.
"""

import logging
from urllib.parse import urlsplit

from anyio import to_thread
from fastapi import APIRouter, Response, status

from ..celery_app import celery_app
from ..config import get_settings
from ..dependencies import Store
from ..models import Health, Readiness

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

# Each part's cause of failure at the last check: a cause is logged when it appears or changes,
# not at every probe.
_causes: dict[str, str | None] = {"broker": None, "result backend": None}


@router.get("/")
async def root() -> Health:
    return Health(app=get_settings().app_name)


@router.get("/health/live")
async def live() -> Health:
    """The process is up and serving: no dependency is checked."""
    return Health(app=get_settings().app_name)


def _connect_to_broker() -> None:
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(
            max_retries=1,
            interval_start=0,
            interval_step=0,
            timeout=get_settings().broker_socket_timeout_seconds,
        )


def _cause(exc: Exception) -> str:
    """The first line of an error, without the passwords of the service's URLs."""
    text = str(exc).strip()
    cause = text.splitlines()[0] if text else type(exc).__name__
    settings = get_settings()
    for url in (settings.celery_broker_url, settings.celery_result_backend):
        password = urlsplit(url).password
        if password:
            cause = cause.replace(password, "***")
    return cause


def _note(part: str, cause: str | None) -> None:
    if cause == _causes[part]:
        return
    if cause is None:
        logger.info("Readiness: the %s answers again", part)
    else:
        logger.warning("Readiness: the %s is unreachable: %s", part, cause)
    _causes[part] = cause


@router.get(
    "/health/ready",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness}},
    response_model_exclude_none=True,
)
async def ready(store: Store, response: Response) -> Readiness:
    """Both the broker and the result backend answer; if not, `detail` says why."""
    causes: dict[str, str | None] = {"broker": None, "result backend": None}
    try:
        await to_thread.run_sync(_connect_to_broker)
    except Exception as exc:
        causes["broker"] = _cause(exc)
    try:
        await store.ping()
    except Exception as exc:
        causes["result backend"] = _cause(exc)
    for part, cause in causes.items():
        _note(part, cause)
    broker = "ok" if causes["broker"] is None else "unreachable"
    backend = "ok" if causes["result backend"] is None else "unreachable"
    if broker == backend == "ok":
        return Readiness(status="ok", broker=broker, result_backend=backend)
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    detail = "; ".join(f"{part}: {cause}" for part, cause in causes.items() if cause is not None)
    return Readiness(status="unavailable", broker=broker, result_backend=backend, detail=detail)
