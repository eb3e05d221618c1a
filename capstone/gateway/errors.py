"""Every error the gateway returns has the shape ``{"error": {code, message}}``.

Errors a client can cause are 4xx with a message that says what to change. An
unexpected failure is a 500 with no traceback in the reply; the traceback goes to
the log.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from capstone.domain import ErrorBody, ErrorResponse
from capstone.eventstore import DATABASE_OUTAGE
from capstone.gateway.runs import RunNotFound
from capstone.gateway.tenancy import ClientError
from capstone.sessions import RunConflict

log = logging.getLogger("capstone.gateway")

# The database is unreachable: from asyncpg, or from the DBOS client (SQLAlchemy).
UNAVAILABLE = (*DATABASE_OUTAGE, sqlalchemy.exc.OperationalError)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)


def _describe_validation(
    errors: list[dict[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    details = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        details.append({"field": where or "body", "problem": error.get("msg", "")})
    summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
    return summary, details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(error.get("type") == "json_invalid" for error in errors):
            return error_response(
                400, "malformed_json", "the request body is not valid JSON"
            )
        summary, details = _describe_validation(errors)
        return error_response(422, "invalid_request", summary, details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RunNotFound)
    async def run_not_found(_: Request, exc: RunNotFound) -> JSONResponse:
        return error_response(404, "run_not_found", f"no run with execution id {exc}")

    @app.exception_handler(RunConflict)
    async def run_conflict(_: Request, exc: RunConflict) -> JSONResponse:
        return error_response(409, "run_id_reused", str(exc))

    @app.exception_handler(ClientError)
    async def client_error(_: Request, exc: ClientError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    async def database_down(_: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable: %s", exc)
        return error_response(
            503, "unavailable", "the database is unavailable; retry later"
        )

    for outage in UNAVAILABLE:
        app.add_exception_handler(outage, database_down)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            500, "internal_error", "the gateway failed; the error is logged"
        )


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, before the app sees them.

    A declared Content-Length is checked at once. A chunked body is read up to the
    limit here and handed on only if it fits, so the refusal is the same 413
    whichever way the client sends it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        too_large = error_response(
            413,
            "payload_too_large",
            f"the request body is larger than {self.max_bytes} bytes",
        )
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                await too_large(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return

        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed: Message = {
            "type": "http.request",
            "body": bytes(body),
            "more_body": False,
        }
        await self.app(scope, _replay([replayed], then=receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A receive channel that yields ``messages`` first, then defers to ``then``."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive
