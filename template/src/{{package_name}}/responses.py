"""Error answers shared by the endpoints that take a JSON body, for their OpenAPI schema."""

from typing import Any

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
