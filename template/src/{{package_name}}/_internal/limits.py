"""Limits on what the API takes: body size, and the shape of the JSON in it.

FastAPI's own `max_body_size` answers a body whose declared length is too large in plain text;
BodySizeLimitMiddleware answers JSON, like every other error of the API, and says what the
limit is. `json_limit_error` finds what a worker could choke on in a decoded body (nesting,
sheer number of values, strings that cannot be encoded); request models refuse it (models.py)
and the worker fails task messages that carry it (poison.py).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, status
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"Request body exceeds {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(
                {"detail": self._too_large()},
                status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            )
            await response(scope, receive, send)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, self._too_large())
            return message

        await self.app(scope, limited_receive, send)


# A task message nested deeper than this is failed by the worker before its pool gets it (see
# poison.py). The worker pickles each message for its pool, and a RecursionError there stops
# the whole worker: pickling fails from about 500 levels on Python 3.11 (two of its 1000
# recursion levels per level of nesting, less what the worker's own stack uses), 750 on 3.12
# and 5,000 on 3.13. MAX_JSON_DEPTH stays well below it: a chain's later steps and Celery's
# message add a few levels around the request's data.
MAX_MESSAGE_DEPTH = 256
MAX_JSON_DEPTH_CEILING = 128

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class JSONLimitError:
    """Where a JSON value breaks a limit, in pydantic's terms (an error type and a message)."""

    type: str
    message: str
    location: Location
    context: dict[str, int] = field(default_factory=dict)


def printable(text: str) -> str:
    """`text` with what UTF-8 cannot encode (lone surrogates) escaped as `\\udxxx`."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def encodes(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_limit_error(
    value: object, *, max_depth: int, max_items: int | None = None, check_strings: bool = True
) -> JSONLimitError | None:
    """The first place where `value` nests deeper than `max_depth` containers, holds more than
    `max_items` keys and items in all, or (with `check_strings`) has a key or string that
    does not encode as UTF-8. Iterative: any depth is checked without recursion."""
    if isinstance(value, str):
        return _not_utf8(()) if check_strings and not encodes(value) else None
    if not isinstance(value, dict | list | tuple):
        return None
    stack: list[tuple[dict[Any, Any] | list[Any] | tuple[Any, ...], Location]] = [(value, ())]
    items = 0
    while stack:
        container, location = stack.pop()
        if len(location) >= max_depth:
            return JSONLimitError(
                "json_too_deep",
                f"JSON nested deeper than {max_depth} levels",
                location,
                {"max_depth": max_depth},
            )
        items += len(container)
        if max_items is not None and items > max_items:
            return JSONLimitError(
                "json_too_many_items",
                f"JSON holding more than {max_items} keys and items in all",
                location,
                {"max_items": max_items},
            )
        entries: Iterable[tuple[Any, Any]]
        if isinstance(container, dict):
            entries = container.items()
            for key in container:
                if check_strings and isinstance(key, str) and not encodes(key):
                    return _not_utf8((*location, printable(key)))
        else:
            entries = enumerate(container)
        # Locations are made only for what is looked into: most values are scalars.
        nested: list[tuple[dict[Any, Any] | list[Any] | tuple[Any, ...], Location]] = []
        for key, child in entries:
            if isinstance(child, str):
                if check_strings and not encodes(child):
                    return _not_utf8((*location, _location_key(key)))
            elif isinstance(child, dict | list | tuple):
                nested.append((child, (*location, _location_key(key))))
        stack.extend(reversed(nested))
    return None


def _location_key(key: object) -> str | int:
    return key if isinstance(key, str | int) else str(key)


def _not_utf8(location: Location) -> JSONLimitError:
    return JSONLimitError(
        "string_not_utf8",
        "String that UTF-8 cannot encode (a lone surrogate such as \\ud800)",
        location,
    )
