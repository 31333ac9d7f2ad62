"""What the endpoints of several routers share: the answer to a queued task, the task id path
parameter, the 404 for an unknown task id and the errors of a JSON body in the OpenAPI schema.

No `router` here: `discover_routers()` skips modules whose name starts with `_`.
"""

from typing import Annotated, Any

from fastapi import Path, status

from ..models import TaskAccepted

TaskId = Annotated[str, Path(min_length=1, max_length=255)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"description": "No task was submitted with this id"}
}

# As `openapi_extra`: merged into FastAPI's own entries, so its 422 keeps its schema.
JSON_BODY_ERRORS: dict[str, Any] = {
    "responses": {
        "400": {
            "description": "The body could not be parsed: it is not valid UTF-8",
            "content": {
                "application/json": {"example": {"detail": "There was an error parsing the body"}}
            },
        },
        "422": {
            "description": (
                "Validation error: `detail` lists each problem with its `loc`. Besides "
                "malformed JSON and wrong types: `json_too_deep` (nested deeper than "
                "MAX_JSON_DEPTH levels), `json_too_many_items` (more than MAX_JSON_ITEMS keys "
                "and items in all), `string_not_utf8` (a key or string with a lone surrogate)"
            )
        },
    }
}


def queued(task_id: str, what: str) -> TaskAccepted:
    """The 202 answer to a submitted task: its id and where to read its status."""
    return TaskAccepted(task_id=task_id, message=f"{what} queued; status at /api/task/{task_id}")
