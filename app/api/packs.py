"""PromptPacks: list, read, upload."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Query, Response
from fastapi.responses import JSONResponse

from app.api.guard import api_router
from app.api.operation import operation
from app.api.params import PathId
from app.api.schemas import PackList
from app.deps import ManagerDep, PrincipalDep
from app.errors import (
    Forbidden,
    InvalidCursor,
    InvalidPack,
    PackExists,
    PackNotFound,
    StoreUnavailable,
)
from app.packs import PackSummary, PromptPack

router = api_router(tags=["packs"])


@router.get(
    "/packs", response_model=PackList, **operation("listPacks", InvalidCursor, StoreUnavailable)
)
async def list_packs(
    manager: ManagerDep,
    _: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> PackList:
    page = await manager.packs.list(limit=limit, cursor=cursor)
    return PackList(data=page.data, next_cursor=page.next_cursor)


@router.get(
    "/packs/{pack_id}",
    **operation(
        "getPack",
        PackNotFound,
        StoreUnavailable,
        responses={200: {"model": PromptPack, "description": "The PromptPack document."}},
    ),
)
async def get_pack(
    pack_id: PathId,
    manager: ManagerDep,
    _: PrincipalDep,
    version: Annotated[str | None, Query(max_length=100)] = None,
) -> JSONResponse:
    """The pack document as it was loaded (latest version unless `version` is given)."""
    return JSONResponse((await manager.packs.get(pack_id, version)).to_document())


@router.post(
    "/packs",
    status_code=201,
    response_model=PackSummary,
    **operation(
        "uploadPack",
        Forbidden,
        InvalidPack,
        PackExists,
        StoreUnavailable,
        responses={200: {"model": PackSummary, "description": "Identical pack already loaded"}},
    ),
)
async def upload_pack(
    response: Response,
    manager: ManagerDep,
    principal: PrincipalDep,
    document: dict[str, Any] = Body(..., description="A PromptPack document."),
) -> PackSummary:
    """Validate and store a pack; every problem is listed in a 422 `invalid_pack`.
    Uploaded packs are kept in the state store and survive restarts. Packs are global, so
    only a `service` key may upload (403 `forbidden` for a `user` key)."""
    if principal.role != "service":
        raise Forbidden("Uploading a PromptPack needs a service key: packs are shared.")
    summary, created = await manager.packs.upload(document)
    if not created:
        response.status_code = 200
    return summary
