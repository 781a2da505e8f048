"""Runs: status, event stream (replay + live), cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Query

from app.api.guard import api_router
from app.api.params import PathId
from app.api.schemas import RunOut, problems
from app.api.sse import SSE_RESPONSE, event_stream, last_event_id
from app.deps import ManagerDep, PrincipalDep

router = api_router(tags=["runs"])


@router.get(
    "/conversations/{conversation_id}/runs/{run_id}",
    response_model=RunOut,
    responses=problems(404),
)
async def get_run(
    conversation_id: PathId, run_id: PathId, manager: ManagerDep, principal: PrincipalDep
) -> RunOut:
    record = await manager.runs.get(principal, conversation_id, run_id)
    return RunOut.of(record.run)


@router.get(
    "/conversations/{conversation_id}/runs/{run_id}/events",
    responses={200: SSE_RESPONSE, **problems(404)},
)
async def run_events(
    conversation_id: PathId,
    run_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    after: Annotated[int | None, Query(ge=0, description="Replay events after this seq.")] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Any:
    await manager.runs.get(principal, conversation_id, run_id)
    events = manager.runs.events(run_id, after=last_event_id(last_event_id_header, after))
    return event_stream(events, ping_s=manager.settings.sse_ping_s, run_id=run_id)


@router.post(
    "/conversations/{conversation_id}/runs/{run_id}/cancel",
    response_model=RunOut,
    responses=problems(404),
)
async def cancel_run(
    conversation_id: PathId, run_id: PathId, manager: ManagerDep, principal: PrincipalDep
) -> RunOut:
    record = await manager.runs.cancel(principal, conversation_id, run_id)
    return RunOut.of(record.run)
