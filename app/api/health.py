"""Operations: liveness, readiness, Prometheus metrics, JSON stats."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from app.api.operation import operation
from app.api.schemas import Health, Readiness, Stats
from app.deps import ManagerDep
from app.errors import StoreUnavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, **operation("getHealth"))
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, **operation("getReadiness", StoreUnavailable))
async def readyz(manager: ManagerDep) -> dict[str, Any]:
    return {"status": "ready", **await manager.readiness()}


@router.get("/metrics", response_class=PlainTextResponse, **operation("getMetrics"))
async def metrics(manager: ManagerDep) -> PlainTextResponse:
    return PlainTextResponse(
        manager.stats.prometheus(active_runs=manager.runs.active),
        media_type="text/plain; version=0.0.4",
    )


@router.get("/stats", response_model=Stats, **operation("getStats"))
async def stats(manager: ManagerDep) -> dict[str, Any]:
    return manager.stats.snapshot(active_runs=manager.runs.active)
