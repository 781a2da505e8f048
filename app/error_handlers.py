"""The HTTP side of the error hierarchy (`app.errors`): every `ParleyError`, request
validation error, Starlette HTTP error and unexpected exception answers as
`application/problem+json` (`install_error_handlers`); `problem_response` builds one for
middleware that answers before routing."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.head import allowed_methods
from app.errors import (
    HTTP_ERROR_CODES,
    HTTP_ERROR_FALLBACK,
    PROBLEM_JSON,
    InvalidRequest,
    MalformedJSON,
    ParleyError,
)

log = logging.getLogger("parley.errors")


def _printable(value: Any) -> Any:
    """`value` with every lone surrogate written as the text `\\udXXX`, so a problem that
    quotes bad input (a metadata key, say) can still be sent as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def problem_response(err: ParleyError) -> JSONResponse:
    problem = err.to_problem()
    try:
        json.dumps(problem, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        problem = _printable(problem)
    return JSONResponse(
        problem, status_code=err.status, headers=err.headers, media_type=PROBLEM_JSON
    )


def _validation_problem(exc: RequestValidationError) -> ParleyError:
    items: list[dict[str, Any]] = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            return MalformedJSON(f"Request body is not valid JSON: {e.get('msg', '')}".strip())
        items.append({"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))})
    return InvalidRequest("The request does not match the expected schema.", errors=items)


def install_error_handlers(app: FastAPI) -> None:
    async def on_parley_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ParleyError)
        if exc.status >= 500:
            log.warning("%s: %s", exc.code, exc.detail)
        return problem_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(_validation_problem(exc))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {
                **(headers or {}),
                "Allow": allowed_methods(app.router.routes, request.scope),
            }
        body = {
            "type": "about:blank",
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "code": HTTP_ERROR_CODES.get(exc.status_code, HTTP_ERROR_FALLBACK),
        }
        return JSONResponse(
            body,
            status_code=exc.status_code,
            headers=headers,
            media_type=PROBLEM_JSON,
        )

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(ParleyError("An unexpected error occurred."))

    app.add_exception_handler(ParleyError, on_parley_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
