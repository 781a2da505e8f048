"""Operations: liveness, readiness, Prometheus metrics, JSON stats."""

from __future__ import annotations

from typing import Any

from fastapi.responses import PlainTextResponse

from app.api.guard import api_router
from app.api.operation import operation
from app.api.schemas import Health, Readiness, Stats
from app.deps import ManagerDep, ServicePrincipalDep
from app.errors import Forbidden, NotReady, StoreUnavailable
from app.manager.stats import PROMETHEUS_CONTENT_TYPE

router = api_router(tags=["operations"])


@router.get("/healthz", response_model=Health, **operation("getHealth"))
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    description="Ready when the start-up warm-up is over, the state store and the "
    "coordination backend answer a round trip, the instance holds its liveness lease and "
    "at least one PromptPack is loaded; else 503 `store_unavailable`/`not_ready`.",
    **operation("getReadiness", StoreUnavailable, NotReady),
)
async def readyz(manager: ManagerDep) -> dict[str, Any]:
    return {"status": "ready", **await manager.readiness()}


@router.get("/metrics", response_class=PlainTextResponse, **operation("getMetrics", Forbidden))
async def metrics(manager: ManagerDep, _: ServicePrincipalDep) -> PlainTextResponse:
    return PlainTextResponse(
        manager.stats.prometheus(
            active_runs=manager.runs.active,
            admission_waiting=manager.admission.waiting,
            admission_active=manager.admission.active,
        ),
        media_type=PROMETHEUS_CONTENT_TYPE,
    )


@router.get("/stats", response_model=Stats, **operation("getStats", Forbidden))
async def stats(manager: ManagerDep, _: ServicePrincipalDep) -> dict[str, Any]:
    body = manager.stats.snapshot(active_runs=manager.runs.active)
    body["context_estimate"] = manager.calibration.snapshot()
    return body
