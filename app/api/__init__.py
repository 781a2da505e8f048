"""The HTTP API: one router per resource, thin (parse, authorize, call the manager, shape
the response).

How to add an endpoint (the OpenAPI document is what generated clients are built from, so
it must say exactly what the endpoint does)::

    @router.post(
        "/conversations/{conversation_id}/fork",
        status_code=201,
        response_model=Conversation,             # a real schema for every success body
        **operation("forkConversation", ConversationNotFound, MessageNotFound,
                    CheckpointNotFound, ConversationExists, StoreUnavailable),
    )
    async def fork_conversation(
        conversation_id: str, body: ForkRequest, manager: ManagerDep, principal: PrincipalDep
    ) -> Conversation: ...

1. `**operation(operationId, *errors)` (`app/api/operation.py`) on every route: a camelCase,
   verb-first `operationId` (generated clients name methods after it) and the
   `ParleyError` classes the endpoint raises. A run-starting endpoint passes
   `*TURN_ERRORS` and `stream="on_request"`; an SSE-only one `stream="always"`.
2. Take the caller as `PrincipalDep` (or a dependency built on it): that is what puts the
   bearer security scheme and the 401 on the operation. An endpoint without a key is
   listed in `PUBLIC_OPERATIONS` below.
3. Implied errors are added for you: a body → 413, 422 `validation_error` (JSON: also
   400 `malformed_json`); any parameter → 422. A body the route parses itself is declared
   with `operation(..., openapi_extra={"requestBody": ...})` and its model passed to
   `install_openapi(request_models=...)` in `app/main.py`. Every error is the one `Problem` schema;
   its `code` enum is derived from `app.errors`, so a new `ParleyError` appears in it by
   itself (add it to the README's error table too).
4. An endpoint that changes a conversation takes `IfMatchDep` (`app/api/params.py`) and
   declares `PreconditionFailed` (412), unless it is listed in `UNCONDITIONAL_WRITES`
   below; one that answers with a conversation sets its `ETag` with `set_etag` and
   passes `operation(..., etag=True)`.
5. `make openapi` and commit `openapi/openapi.json`. `tests/api/test_openapi.py` walks the
   document and fails on a missing `operation(...)`, a secured operation without 401 or a
   public one not listed here, a write under `/conversations/{conversation_id}` without
   `If-Match` and 412, an error response that is not a `Problem`, or a code missing from
   the README; the generated clients (`tests/clients/`) must still build.
"""

# Operations that take no API key (everything else declares the bearer scheme).
# `getMetrics` and `getStats` cover every user: they need a service key (issue 7).
PUBLIC_OPERATIONS = frozenset({"getHealth", "getReadiness"})

# Writes under /conversations/{conversation_id} that change no conversation, so take no
# `If-Match`: a fork creates another conversation (the source is untouched); a run's
# cancellation changes the run (a turn that did not commit changes nothing).
UNCONDITIONAL_WRITES = frozenset({"forkConversation", "cancelRun"})
