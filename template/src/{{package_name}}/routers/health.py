from anyio import to_thread
from fastapi import APIRouter, Response, status

from ..celery_app import celery_app
from ..config import get_settings
from ..dependencies import Store
from ..models import Health, Readiness

router = APIRouter(tags=["health"])


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


@router.get(
    "/health/ready",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Readiness}},
)
async def ready(store: Store, response: Response) -> Readiness:
    """Both the broker and the result backend answer."""
    broker = backend = "ok"
    try:
        await to_thread.run_sync(_connect_to_broker)
    except Exception:
        broker = "unreachable"
    try:
        await store.ping()
    except Exception:
        backend = "unreachable"
    if broker == backend == "ok":
        return Readiness(status="ok", broker=broker, result_backend=backend)
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="unavailable", broker=broker, result_backend=backend)
