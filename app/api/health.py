"""Operations: liveness, readiness, Prometheus metrics, JSON stats."""

from __future__ import annotations

from typing import Any

from fastapi.responses import PlainTextResponse

from app.api.guard import api_router
from app.api.schemas import problems
from app.deps import ManagerDep, ServicePrincipalDep
from app.manager.stats import PROMETHEUS_CONTENT_TYPE

router = api_router(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses=problems(503),
    description="Ready when the state store and the coordination backend answer a round "
    "trip and at least one PromptPack is loaded; else 503 `store_unavailable`/`not_ready`.",
)
async def readyz(manager: ManagerDep) -> dict[str, Any]:
    return {"status": "ready", **await manager.readiness()}


@router.get("/metrics", response_class=PlainTextResponse, responses=problems(401, 403))
async def metrics(manager: ManagerDep, _: ServicePrincipalDep) -> PlainTextResponse:
    return PlainTextResponse(
        manager.stats.prometheus(active_runs=manager.runs.active),
        media_type=PROMETHEUS_CONTENT_TYPE,
    )


@router.get("/stats", responses=problems(401, 403))
async def stats(manager: ManagerDep, _: ServicePrincipalDep) -> dict[str, Any]:
    return manager.stats.snapshot(active_runs=manager.runs.active)
