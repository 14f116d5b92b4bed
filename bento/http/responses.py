"""JSON answers, serialised by orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    """A JSON response serialised by orjson (several times faster than the standard library)."""

    def render(self, content: Any) -> bytes:
        """The body bytes."""
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
