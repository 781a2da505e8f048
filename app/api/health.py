"""Operations: liveness, readiness, Prometheus metrics, JSON stats."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from app.api.schemas import problems
from app.deps import ManagerDep

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=problems(503))
async def readyz(manager: ManagerDep) -> dict[str, Any]:
    return {"status": "ready", **await manager.readiness()}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(manager: ManagerDep) -> PlainTextResponse:
    return PlainTextResponse(
        manager.stats.prometheus(active_runs=manager.runs.active),
        media_type="text/plain; version=0.0.4",
    )


@router.get("/stats")
async def stats(manager: ManagerDep) -> dict[str, Any]:
    return manager.stats.snapshot(active_runs=manager.runs.active)
