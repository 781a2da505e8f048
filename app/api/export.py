"""Export and import of conversations (DESIGN §6; the document: `app.domain.export_doc`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.guard import api_router, is_json_type, parse_json_body_async
from app.api.operation import operation
from app.api.params import PathId, QueryId, set_etag
from app.api.sse import accept_field
from app.deps import ManagerDep, PrincipalDep
from app.domain import Conversation
from app.domain.export_doc import ConversationDocument
from app.errors import (
    ConversationExists,
    ConversationNotFound,
    InvalidRequest,
    InvalidVariables,
    NotFound,
    Overloaded,
    PackNotFound,
    PromptNotFound,
    StoreUnavailable,
    Unauthorized,
    UnsupportedContentType,
)

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
    "per line, streamed. `Accept: application/json` (without `application/x-ndjson`) gets "
    "the same documents as one JSON array. A user key may export only its own user "
    "(another user's id is a 404 `not_found`).",
    **operation(
        "exportUser",
        NotFound,
        StoreUnavailable,
        responses={
            200: {
                "description": "`application/x-ndjson`: one `ConversationDocument` per line "
                "(the default); `application/json` when asked for: an array of them.",
                "content": {
                    "application/x-ndjson": {"schema": DOCUMENT_REF},
                    "application/json": {"schema": {"type": "array", "items": DOCUMENT_REF}},
                },
            }
        },
    ),
)
async def export_user(
    user_id: PathId,
    manager: ManagerDep,
    principal: PrincipalDep,
    request: Request,
    include_media: IncludeMedia = False,
) -> Any:
    wanted = (accept_field(request) or "").lower()
    as_array = "application/json" in wanted and "application/x-ndjson" not in wanted
    body = await manager.export.user(
        principal, user_id, include_media=include_media, as_array=as_array
    )
    return StreamingResponse(
        body,
        media_type="application/json" if as_array else "application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{user_id}.ndjson"'},
    )


IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/ConversationDocument"},
                        {"$ref": "#/components/schemas/PromptKitState"},
                    ]
                }
            }
        },
    }
}


@router.post(
    "/conversations/import",
    status_code=201,
    response_model=Conversation,
    description="A new conversation from a `parley.conversation/v1` document (every message "
    "id, parent, checkpoint and the head kept; a new lineage, so the exported conversation "
    "may still exist) or from a PromptKit statestore state (a linear history; `pack_id` and "
    "`prompt_name` required). A document with problems is a 422 listing every one of them, "
    "and nothing is stored. A user key imports only for its own user.",
    **operation(
        "importConversation",
        ConversationExists,
        Unauthorized,
        PackNotFound,
        PromptNotFound,
        InvalidVariables,
        UnsupportedContentType,
        Overloaded,
        StoreUnavailable,
        openapi_extra=IMPORT_BODY,
        etag=True,
    ),
)
async def import_conversation(
    request: Request,
    response: Response,
    manager: ManagerDep,
    principal: PrincipalDep,
    conversation_id: Annotated[
        QueryId, Query(description="The new conversation's id (default: the document's).")
    ] = None,
    user_id: Annotated[
        QueryId, Query(description="Its user (a service key; default: the document's).")
    ] = None,
    pack_id: Annotated[QueryId, Query(description="PromptKit states only.")] = None,
    pack_version: Annotated[
        str | None, Query(min_length=1, max_length=100, description="PromptKit states only.")
    ] = None,
    prompt_name: Annotated[
        str | None, Query(min_length=1, max_length=200, description="PromptKit states only.")
    ] = None,
) -> Conversation:
    if not is_json_type(request.headers.get("content-type")):
        raise UnsupportedContentType(
            "This endpoint takes application/json.", extra={"accept": ["application/json"]}
        )
    # the body is received before the slot is taken (a slow upload must not hold one:
    # review R5); its parse, most of an import's CPU, runs within the slot (the import's
    # own `admit` is then re-entrant)
    raw = await request.body()
    if not raw.strip():
        raise InvalidRequest(
            "The request body is missing.", errors=[{"loc": ["body"], "msg": "Field required"}]
        )
    async with manager.admission.admit():
        document = await parse_json_body_async(raw)
        conv = await manager.imports.import_document(
            principal,
            document,
            conversation_id=conversation_id,
            user_id=user_id,
            pack_id=pack_id,
            pack_version=pack_version,
            prompt_name=prompt_name,
        )
    response.headers["Location"] = f"/conversations/{conv.id}"
    return set_etag(response, conv)
