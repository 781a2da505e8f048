"""Runs: status, event stream (replay + live), cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Query, Request, Response

from app.api.guard import api_router
from app.api.operation import operation
from app.api.params import PathId
from app.api.schemas import RunOut
from app.api.sse import last_event_id, non_empty
from app.api.sse_response import event_stream
from app.deps import ManagerDep, PrincipalDep
from app.domain.limits import MAX_EVENT_SEQ
from app.domain.requests import CancelRun
from app.errors import ConversationNotFound, InvalidRequest, RunNotFound, StoreUnavailable

router = api_router(tags=["runs"])

RUN_ERRORS = (ConversationNotFound, RunNotFound, StoreUnavailable)


@router.get(
    "/conversations/{conversation_id}/runs/{run_id}",
    response_model=RunOut,
    **operation("getRun", *RUN_ERRORS),
)
async def get_run(
    conversation_id: PathId, run_id: PathId, manager: ManagerDep, principal: PrincipalDep
) -> RunOut:
    record = await manager.runs.get(principal, conversation_id, run_id)
    return RunOut.of(record.run)


@router.get(
    "/conversations/{conversation_id}/runs/{run_id}/events",
    **operation(
        "getRunEvents",
        *RUN_ERRORS,
        stream="always",
        responses={
            204: {
                "description": "The run is finished and `Last-Event-ID` (or `after`) is at or "
                "past its terminal event: nothing more will come (an `EventSource` stops)."
            }
        },
    ),
)
async def run_events(
    request: Request,
    conversation_id: PathId,
    run_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_EVENT_SEQ, description="Replay events after this seq.")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Any:
    if len(request.headers.getlist("last-event-id")) > 1:  # (tester-2 U7)
        raise InvalidRequest(
            "Send one Last-Event-ID header, not several: a proxy keeping another would "
            "resume elsewhere.",
            errors=[{"loc": ["header", "Last-Event-ID"], "msg": "sent more than once"}],
        )
    record = await manager.runs.get(principal, conversation_id, run_id)
    events = manager.runs.events(run_id, after=last_event_id(last_event_id_header, after))
    if record.run.status.terminal:
        rest = await non_empty(events)
        if rest is None:
            return Response(status_code=204)  # nothing after what the reader has seen
        events = rest
    return await event_stream(
        events,
        ping_s=manager.settings.sse_ping_s,
        run_id=run_id,
        streams=manager.streams,
        first_wait_s=manager.settings.store_timeout_s,
    )


@router.post(
    "/conversations/{conversation_id}/runs/{run_id}/cancel",
    response_model=RunOut,
    **operation("cancelRun", *RUN_ERRORS),
)
async def cancel_run(
    conversation_id: PathId,
    run_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    body: CancelRun | None = None,  # no fields: only refuses unknown ones
) -> RunOut:
    record = await manager.runs.cancel(principal, conversation_id, run_id)
    return RunOut.of(record.run)
