from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter, HTTPException, status
from sse_starlette import EventSourceResponse, JSONServerSentEvent

from ..config import get_settings
from ..dependencies import Store
from ..results import TaskState
from ..task_status import status_body
from .tasks import NOT_FOUND, TaskId

router = APIRouter(prefix="/api", tags=["tasks"])

# A client that stops reading for this long is dropped instead of pinning its stream.
SEND_TIMEOUT_SECONDS = 30.0


def _event(task_id: str, state: TaskState) -> JSONServerSentEvent | None:
    if state.state == "PROGRESS":
        return JSONServerSentEvent(state.result, event="progress")
    if state.ready:
        name = "complete" if state.state == "SUCCESS" else "failure"
        return JSONServerSentEvent(status_body(task_id, state).model_dump(mode="json"), event=name)
    return None


async def _events(
    task_id: str, state: TaskState, states: AsyncGenerator[TaskState | None, None]
) -> AsyncIterator[JSONServerSentEvent]:
    try:
        while True:
            event = _event(task_id, state)
            if event is not None:
                yield event
            if state.ready:
                return
            following = await anext(states, None)
            if following is None:  # expired while watched
                return
            state = following
    finally:
        await states.aclose()


@router.get(
    "/task/{task_id}/stream",
    response_class=EventSourceResponse,
    responses={
        **NOT_FOUND,
        status.HTTP_200_OK: {
            "content": {"text/event-stream": {}},
            "description": "`progress` events, then one `complete` or `failure` event",
        },
    },
)
async def stream_task(task_id: TaskId, store: Store) -> EventSourceResponse:
    """Server-sent events: each progress update, then the final state."""
    states = store.watch(task_id)
    state = await anext(states)
    if state is None:
        await states.aclose()
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No task with id {task_id}")
    return EventSourceResponse(
        _events(task_id, state, states),
        ping=get_settings().sse_ping_seconds,
        send_timeout=SEND_TIMEOUT_SECONDS,
    )
