"""PromptPacks: list, read, upload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response
from fastapi.responses import JSONResponse

from app.api.operation import operation
from app.api.schemas import PackList
from app.deps import ManagerDep, PrincipalDep
from app.errors import InvalidPack, PackExists, PackNotFound, StoreUnavailable
from app.packs import PackSummary, PromptPack

router = APIRouter(tags=["packs"])


@router.get("/packs", response_model=PackList, **operation("listPacks", StoreUnavailable))
async def list_packs(manager: ManagerDep, _: PrincipalDep) -> PackList:
    return PackList(data=await manager.packs.list())


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
    pack_id: str, manager: ManagerDep, _: PrincipalDep, version: str | None = None
) -> JSONResponse:
    """The pack document as it was loaded (latest version unless `version` is given)."""
    return JSONResponse((await manager.packs.get(pack_id, version)).to_document())


@router.post(
    "/packs",
    status_code=201,
    response_model=PackSummary,
    **operation(
        "uploadPack",
        InvalidPack,
        PackExists,
        StoreUnavailable,
        responses={200: {"model": PackSummary, "description": "Identical pack already loaded"}},
    ),
)
async def upload_pack(
    response: Response,
    manager: ManagerDep,
    _: PrincipalDep,
    document: dict[str, Any] = Body(..., description="A PromptPack document."),
) -> PackSummary:
    """Validate and store a pack; every problem is listed in a 422 `invalid_pack`.
    Uploaded packs are kept in the state store and survive restarts."""
    summary, created = await manager.packs.upload(document)
    if not created:
        response.status_code = 200
    return summary
