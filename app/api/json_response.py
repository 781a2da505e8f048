"""`JSONResponse` whose body is written by `app.json_text` (pydantic-core) instead of
`json.dumps`: the same JSON to any reader (see there), ~5x less CPU for a turn's body."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from app.json_text import json_bytes


class CompactJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json_bytes(content)
