"""Stored values made safe to answer with: JSON that encodes, whatever was stored.

A result, a progress record or an error message comes from a worker, or from whatever wrote
to the result backend. Status bodies and stream events must not fail on any of it: a lone
surrogate does not encode as UTF-8, bytes and other types are not JSON, and pydantic refuses
to serialise values nested about 255 levels deep.
"""

import math
from typing import Any

from .limits import encodes, printable

# Deeper containers are shown as TOO_DEEP: below pydantic's serialisation limit, above
# MAX_JSON_DEPTH_CEILING (data that came in through the API can come back out whole).
SHOWN_MAX_DEPTH = 200
TOO_DEEP = "<nested too deep to show>"


def json_safe(value: Any, depth: int = 0) -> Any:
    """`value` as JSON types only: strings that encode (lone surrogates escaped), finite
    numbers (NaN and infinities become null), bytes decoded, anything else as its str()."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if encodes(value) else printable(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict | list | tuple):
        if depth >= SHOWN_MAX_DEPTH:
            return TOO_DEEP
        if isinstance(value, dict):
            return {json_safe(str(key)): json_safe(item, depth + 1) for key, item in value.items()}
        return [json_safe(item, depth + 1) for item in value]
    return printable(str(value))
