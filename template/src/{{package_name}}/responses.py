"""Error answers that several endpoints share, as entries of their OpenAPI `responses`."""

from typing import Any

from fastapi import status

Responses = dict[int | str, dict[str, Any]]

# Every endpoint that takes a JSON body: FastAPI answers 400 for a body it cannot parse at all.
JSON_BODY_ERRORS: Responses = {
    status.HTTP_400_BAD_REQUEST: {
        "description": (
            "The body could not be parsed: it is not valid UTF-8, or its JSON nests too deeply"
        ),
        "content": {
            "application/json": {"example": {"detail": "There was an error parsing the body"}}
        },
    },
}
