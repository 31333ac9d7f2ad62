"""POST requests must declare `Content-Type: application/json` (415 otherwise).

Browsers send a cross-site form or text/plain POST without asking first (a CORS "simple"
request); a JSON content type makes them ask (preflight), and the CORS policy says no. So no
foreign page can queue work, not even through endpoints that take no body. PUT, PATCH and
DELETE are never simple: browsers always ask first.
"""

from email.message import Message
from typing import Any

from fastapi import FastAPI, status
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SIMPLE_REQUEST_METHODS_WITH_BODY = frozenset({"POST"})
UNSUPPORTED_MEDIA_TYPE = {
    "description": "Content-Type is not application/json (required without a body too)"
}


def is_json(content_type: bytes | None) -> bool:
    """`application/json`, with or without parameters such as `; charset=utf-8`."""
    if content_type is None:
        return False
    message = Message()
    message["content-type"] = content_type.decode("latin-1")
    return message.get_content_type() == "application/json"


class JsonOnlyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in SIMPLE_REQUEST_METHODS_WITH_BODY
            and not is_json(dict(scope["headers"]).get(b"content-type"))
        ):
            response = JSONResponse(
                {"detail": "Content-Type must be application/json (even without a body)"},
                status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def document_json_only(app: FastAPI) -> None:
    """List the 415 in the OpenAPI schema of every operation the middleware applies to."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for operations in build().get("paths", {}).values():
                for method, operation in operations.items():
                    if method.upper() in SIMPLE_REQUEST_METHODS_WITH_BODY:
                        operation["responses"].setdefault("415", UNSUPPORTED_MEDIA_TYPE)
        return app.openapi_schema or build()

    app.openapi = openapi  # type: ignore[method-assign]
