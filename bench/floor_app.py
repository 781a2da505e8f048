"""The framework floor (DESIGN §11): a bare FastAPI app whose `POST /echo` returns the JSON
body it was sent. Run under the same uvicorn command and load generator as Parley, it is
the cost of HTTP + JSON + FastAPI routing with no work at all.

    uvicorn bench.floor_app:create_app --factory
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI(title="floor")

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app
