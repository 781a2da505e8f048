"""Export and import of conversations (DESIGN §6; the document: `app.domain.export_doc`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import StreamingResponse

from app.api.guard import api_router
from app.api.operation import operation
from app.api.params import PathId
from app.deps import ManagerDep, PrincipalDep
from app.domain.export_doc import ConversationDocument
from app.errors import ConversationNotFound, NotFound, StoreUnavailable

router = api_router(tags=["export"])

DOCUMENT_REF = {"$ref": "#/components/schemas/ConversationDocument"}
IncludeMedia = Annotated[
    bool,
    Query(
        description="Embed media bytes. Not available in this version: `true` is a 422; "
        "media parts keep their references (`media_id`, `sha256`) as stored."
    ),
]


@router.get(
    "/conversations/{conversation_id}/export",
    response_class=StreamingResponse,
    description="The conversation as one portable `parley.conversation/v1` document: the "
    "conversation, every message of its tree (path, checkpoints, fork point, branches), "
    "its checkpoints, the head and a checksum. Streamed from the store page by page.",
    **operation(
        "exportConversation",
        ConversationNotFound,
        StoreUnavailable,
        responses={
            200: {
                "model": ConversationDocument,
                "description": "The document (written incrementally).",
            }
        },
    ),
)
async def export_conversation(
    conversation_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    include_media: IncludeMedia = False,
) -> Any:
    body = await manager.export.conversation(
        principal, conversation_id, include_media=include_media
    )
    return StreamingResponse(
        body,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{conversation_id}.json"'},
    )


@router.get(
    "/users/{user_id}/export",
    response_class=StreamingResponse,
    description="Every live conversation of the user as NDJSON: one `ConversationDocument` "
    "per line, streamed. A user key may export only its own user (another user's id is a "
    "404 `not_found`).",
    **operation(
        "exportUser",
        NotFound,
        StoreUnavailable,
        responses={
            200: {
                "description": "`application/x-ndjson`: one `ConversationDocument` per line.",
                "content": {"application/x-ndjson": {"schema": DOCUMENT_REF}},
            }
        },
    ),
)
async def export_user(
    user_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    include_media: IncludeMedia = False,
) -> Any:
    body = await manager.export.user(principal, user_id, include_media=include_media)
    return StreamingResponse(
        body,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{user_id}.ndjson"'},
    )
