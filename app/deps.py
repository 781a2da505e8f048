"""Annotated dependency aliases for the routers.

Every dependency is an `async def`, although none of them awaits anything: FastAPI runs a
plain `def` dependency in a worker thread, a thread hop (and a fight for the GIL with the
event loop) for each of them on every request; under 100 concurrent streams that was
three hops per request.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.domain.principal import SERVICE, Principal
from app.errors import Forbidden, InvalidRequest, Unauthorized
from app.logs import PRINCIPAL_USER_KEY
from app.manager.manager import ConversationManager
from app.settings import Settings


async def get_manager(request: Request) -> ConversationManager:
    manager: ConversationManager = request.state.manager
    return manager


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


# The one security scheme of the document: every operation that depends on the principal
# declares it (and gets its 401), none takes an `authorization` header parameter.
bearer = HTTPBearer(
    scheme_name="bearerAuth",
    description="An API key from `PARLEY_API_KEYS`, as `Authorization: Bearer <key>`. "
    "Required when the service runs with `PARLEY_AUTH=keys`; ignored with `none`.",
    auto_error=False,
)


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """`PARLEY_AUTH=none`: every caller is the service. `keys`: a Bearer key from
    `PARLEY_API_KEYS`, compared in constant time. The caller is noted for the access line.
    The settings are read from the request's state, not through `Depends(get_settings)`:
    every sub-dependency is one more solve (~25 Python calls) on every request."""
    principal = _principal(request, credentials)
    request.scope.setdefault("state", {})[PRINCIPAL_USER_KEY] = principal.user_id or principal.role
    return principal


def _principal(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    settings: Settings = request.state.settings
    if settings.auth == "none":
        return SERVICE
    if len(request.headers.getlist("authorization")) > 1:
        # Ambiguous: the first one acted while a proxy or log keeping the last saw
        # another caller (outside tester). Refused like a bad key, whichever is valid.
        raise Unauthorized(
            "Send one Authorization header, not several.",
            errors=[{"loc": ["header", "Authorization"], "msg": "sent more than once"}],
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = credentials.credentials.strip() if credentials else ""
    if token:
        for key in settings.api_keys:
            if hmac.compare_digest(key.key.encode(), token.encode()):
                if key.role == "user":
                    return Principal(role="user", user_id=key.user_id)
                return SERVICE
    raise Unauthorized(
        "Send a valid API key as 'Authorization: Bearer <key>'.",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def get_service_principal(
    principal: Annotated[Principal, Depends(get_principal)],
) -> Principal:
    """Operations data (metrics, stats) covers every user: a `service` key only."""
    if principal.role != "service":
        raise Forbidden("This endpoint needs a service key.")
    return principal


ManagerDep = Annotated[ConversationManager, Depends(get_manager)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ServicePrincipalDep = Annotated[Principal, Depends(get_service_principal)]


async def idempotency_key(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Retries with the same key return the first result.",
        ),
    ] = None,
) -> str | None:
    """The request's `Idempotency-Key`, without surrounding whitespace (RFC 9110 5.5: not
    part of a field value). Sent twice it is refused: a proxy keeping the other one would
    map the request onto another key (outside tester T5). One of only whitespace is
    refused too: taken for no key, the request ran unprotected while its client believed
    it was (a retry ran it twice)."""
    if len(request.headers.getlist("idempotency-key")) > 1:
        raise InvalidRequest(
            "Send one Idempotency-Key header, not several.",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "sent more than once"}],
        )
    if key is None:
        return None
    stripped = key.strip(" \t")
    if not stripped:
        raise InvalidRequest(
            "An Idempotency-Key must not be empty or only whitespace.",
            errors=[{"loc": ["header", "Idempotency-Key"], "msg": "empty or only whitespace"}],
        )
    return stripped


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
