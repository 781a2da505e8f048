"""PromptPacks: list, read, upload."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Query, Response

from app.api.guard import api_router
from app.api.params import PathId
from app.api.schemas import PackList, problems
from app.deps import ManagerDep, PrincipalDep
from app.errors import Forbidden
from app.packs import PackSummary

router = api_router(tags=["packs"])


@router.get("/packs", response_model=PackList, responses=problems(400))
async def list_packs(
    manager: ManagerDep,
    _: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> PackList:
    page = await manager.packs.list(limit=limit, cursor=cursor)
    return PackList(data=page.data, next_cursor=page.next_cursor)


@router.get("/packs/{pack_id}", responses=problems(404))
async def get_pack(
    pack_id: PathId,
    manager: ManagerDep,
    _: PrincipalDep,
    version: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """The pack document as it was loaded (latest version unless `version` is given)."""
    return (await manager.packs.get(pack_id, version)).to_document()


@router.post(
    "/packs",
    status_code=201,
    response_model=PackSummary,
    responses={200: {"description": "Identical pack already loaded"}, **problems(403, 409, 422)},
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
        raise Forbidden(
            "Uploading a PromptPack needs a service key: packs are shared by all users."
        )
    summary, created = await manager.packs.upload(document)
    if not created:
        response.status_code = 200
    return summary
