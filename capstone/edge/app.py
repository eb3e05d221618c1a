"""The edge: the public door in front of the gateway, run on Cloud Run.

Stateless. For every request it counts one against the caller's tenant
(``x-tenant-id``) with the same rate-based ban Cloud Armor enforces, or, without
that header, against the caller's address; it answers 429 with ``Retry-After``
over the limit, and otherwise forwards the request to the
gateway unchanged: HTTP with bodies streamed both ways (a Server-Sent Events
stream passes through as it arrives), and WebSockets frame by frame.

    python -m capstone.edge        GATEWAY_URL, PORT (Cloud Run sets it)

Not here yet: verifying the caller's token and taking the tenant from it. Until
then the edge trusts the tenant header exactly as the gateway does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import websockets
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection

from capstone.edge.ratelimit import (
    ANONYMOUS_LIMIT,
    TENANT_HEADER,
    TENANT_LIMIT,
    Decision,
    RateBasedBan,
    RateLimit,
)
from capstone.gateway.tenancy import ClientError, tenant_of

log = logging.getLogger("capstone.edge")

# Never forwarded: hop-by-hop headers (RFC 9110 7.6.1), and the two the client
# sets again for the upstream request (its Host, its body's length).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


class EdgeSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    gateway_url: str = Field(
        "http://127.0.0.1:8080", validation_alias=AliasChoices("GATEWAY_URL")
    )
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("EDGE_HOST"))
    port: int = Field(8090, validation_alias=AliasChoices("PORT", "EDGE_PORT"))
    rate_count: int = Field(TENANT_LIMIT.count, ge=1)
    rate_interval_seconds: int = Field(TENANT_LIMIT.interval_seconds, ge=1)
    rate_ban_seconds: int = Field(TENANT_LIMIT.ban_seconds, ge=1)
    anonymous_rate_count: int = Field(ANONYMOUS_LIMIT.count, ge=1)
    upstream_timeout_seconds: float = 30.0


@dataclass
class EdgeState:
    settings: EdgeSettings
    tenants: RateBasedBan
    anonymous: RateBasedBan
    client: httpx.AsyncClient

    def admit(self, connection: HTTPConnection) -> Decision:
        """Count one request: against its tenant, or without a tenant header,
        against the caller's address (never one key shared by all of them)."""
        # The gateway's own rule for the header: once, a well-formed id (so a key
        # is at most 64 characters, whatever a client sends).
        tenant = tenant_of(connection, "")
        now = time.monotonic()
        if tenant:
            return self.tenants.check(tenant, now)
        return self.anonymous.check(f"address:{client_address(connection)}", now)


def client_address(connection: HTTPConnection) -> str:
    """The caller's address. Google's load balancer appends "client, balancer" to
    X-Forwarded-For; anything before those two was written by the caller."""
    forwarded = [
        part.strip()
        for part in connection.headers.get("x-forwarded-for", "").split(",")
        if part.strip()
    ]
    if len(forwarded) >= 2:
        return forwarded[-2]
    return connection.client.host if connection.client else "unknown"


def upstream_target(connection: HTTPConnection) -> str:
    """The path and query exactly as the client sent them, still percent-encoded:
    decoding first would turn %2F, %3F or %23 into structure the gateway would read
    differently from what the load balancer routed."""
    raw = connection.scope.get("raw_path") or connection.url.path.encode()
    target = raw.decode("latin-1")
    query = connection.scope.get("query_string", b"").decode("latin-1")
    return f"{target}?{query}" if query else target


def client_error(error: ClientError) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": error.code, "message": str(error)}},
        status_code=error.status,
    )


def refusal(retry_after: int) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "rate_limited", "message": "too many requests"}},
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


def create_app(settings: EdgeSettings | None = None) -> FastAPI:
    settings = settings or EdgeSettings()
    limit = RateLimit(
        settings.rate_count, settings.rate_interval_seconds, settings.rate_ban_seconds
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.upstream_timeout_seconds, read=None)
        async with httpx.AsyncClient(
            base_url=settings.gateway_url, timeout=timeout
        ) as client:
            app.state.edge = EdgeState(
                settings,
                RateBasedBan(limit),
                RateBasedBan(
                    RateLimit(
                        settings.anonymous_rate_count,
                        ANONYMOUS_LIMIT.interval_seconds,
                        ANONYMOUS_LIMIT.ban_seconds,
                    )
                ),
                client,
            )
            yield

    app = FastAPI(title="agents edge", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        # The edge's own refusals (a method it does not forward, say) in the same
        # shape as the gateway's errors.
        return JSONResponse(
            {"error": {"code": f"http_{error.status_code}", "message": error.detail}},
            status_code=error.status_code,
            headers=error.headers,
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        edge: EdgeState = request.app.state.edge
        try:
            reply = await edge.client.get("/readyz", timeout=2)
            ready = reply.status_code == 200
        except httpx.HTTPError:
            ready = False
        return JSONResponse(
            {"status": "ready" if ready else "gateway unavailable"},
            status_code=200 if ready else 503,
        )

    @app.api_route(
        "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    )
    async def forward(request: Request, path: str) -> Response:
        edge: EdgeState = request.app.state.edge
        try:
            decision = edge.admit(request)
        except ClientError as error:
            return client_error(error)
        if not decision.allowed:
            log.info("refused: over the rate limit (%s)", request.url.path)
            return refusal(decision.retry_after)

        headers = [
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        ]
        try:
            upstream = edge.client.build_request(
                request.method,
                upstream_target(request),
                headers=headers,
                content=request.stream(),
            )
        except httpx.InvalidURL:
            return client_error(
                ClientError(400, "invalid_request", "the URL cannot be forwarded")
            )
        try:
            reply = await edge.client.send(upstream, stream=True)
        except httpx.HTTPError as error:
            log.warning("gateway unreachable: %s", type(error).__name__)
            return JSONResponse(
                {
                    "error": {
                        "code": "bad_gateway",
                        "message": "the gateway is unreachable",
                    }
                },
                status_code=502,
            )
        return StreamingResponse(
            reply.aiter_raw(),
            status_code=reply.status_code,
            headers={
                k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP
            },
            background=BackgroundTask(reply.aclose),
        )

    @app.websocket("/ws/{path:path}")
    async def forward_socket(websocket: WebSocket, path: str) -> None:
        edge: EdgeState = websocket.app.state.edge
        # Accept first, then close with a code and a reason: a socket refused
        # during the handshake reaches the client as a bare 403.
        try:
            decision = edge.admit(websocket)
        except ClientError as error:
            await websocket.accept()
            await websocket.close(code=1008, reason=str(error))
            return
        if not decision.allowed:
            await websocket.accept()
            await websocket.close(
                code=1008, reason=f"rate limited; retry after {decision.retry_after} s"
            )
            return
        url = edge.settings.gateway_url.replace("http", "ws", 1) + upstream_target(
            websocket
        )
        tenants = websocket.headers.getlist(TENANT_HEADER)
        forwarded = {TENANT_HEADER: tenants[0]} if tenants else {}
        try:
            upstream = await websockets.connect(url, additional_headers=forwarded)
        except websockets.InvalidStatus as refused:
            await websocket.accept()
            await websocket.close(
                code=1008,
                reason=f"the gateway refused it (HTTP {refused.response.status_code})",
            )
            return
        except (OSError, websockets.WebSocketException, ValueError):
            await websocket.accept()
            await websocket.close(code=1011, reason="the gateway is unreachable")
            return
        await websocket.accept()
        async with upstream:
            await _pump(websocket, upstream)

    return app


async def _pump(client: WebSocket, upstream: ClientConnection) -> None:
    """Frames both ways until either side closes; then close the other."""

    async def to_gateway() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await upstream.send(await client.receive_text())

    async def to_client() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in upstream:
                await client.send_text(
                    frame if isinstance(frame, str) else frame.decode()
                )

    tasks = [asyncio.create_task(to_gateway()), asyncio.create_task(to_client())]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    code = upstream.close_code or 1000
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await client.close(code=code if code != 1005 else 1000)
