"""The internal gateway: the runtime's HTTP, Server-Sent Events and WebSocket API.

    POST /agents/{sessionId}/runs        start a run (202, idempotent on runId)
    GET  /runs/{executionId}             status, answer or error
    POST /runs/{executionId}/cancel      cancel a queued or running run
    GET  /runs/{executionId}/events      SSE, resumable with Last-Event-ID;
                                         ?after=N for a JSON page instead
    WS   /ws/{sessionId}?lastEventId=N   the session's events, replayed then live;
                                         accepts Ask and Cancel frames
    GET  /healthz, /readyz

The tenant comes from the ``X-Tenant-Id`` header, which only the edge may set: the
gateway is not reachable from outside the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from dbos import DBOSClient
from fastapi import FastAPI, Header, Path, Query, Request, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.websockets import WebSocketDisconnect, WebSocketState

from capstone import devdb, migrate
from capstone.domain import (
    ErrorBody,
    RunRequest,
    RunStarted,
    RunView,
    ServerAccepted,
    ServerError,
    ServerEvent,
    StoredEvent,
    parse_client_message,
)
from capstone.domain.ids import ID_PATTERN, ID_RULE, is_valid_id
from capstone.domain.socket import Ask, Cancel
from capstone.eventstore import EventStore
from capstone.gateway.errors import (
    BodySizeLimit,
    error_response,
    install_error_handlers,
)
from capstone.gateway.runs import RunNotFound, RunService
from capstone.sessions import RunConflict

log = logging.getLogger("capstone.gateway")


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", extra="ignore", frozen=True
    )

    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 * 1024
    default_tenant: str = "default"
    runner_stale_seconds: float = 20.0
    sse_ping_seconds: float = 15.0


@dataclass
class GatewayState:
    settings: GatewaySettings
    database_url: str
    pool: asyncpg.Pool
    events: EventStore
    runs: RunService
    client: DBOSClient


SessionPath = Annotated[
    str,
    Path(
        alias="sessionId",
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="letters, digits, '_', '-', '.'; up to 64 characters",
    ),
]
TenantHeader = Annotated[
    str | None,
    Header(alias="X-Tenant-Id", max_length=64, pattern=ID_PATTERN),
]


class EventPage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    events: list[StoredEvent]
    next_after: int = Field(alias="nextAfter")
    done: bool


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database_url = settings.database_url or devdb.database_url()
        await asyncio.to_thread(migrate.upgrade, database_url)
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
        events = EventStore(pool)
        client = DBOSClient(system_database_url=database_url, application_name="agents")
        app.state.gateway = GatewayState(
            settings,
            database_url,
            pool,
            events,
            RunService(pool, events, client),
            client,
        )
        log.info("gateway ready on %s:%s", settings.host, settings.port)
        try:
            yield
        finally:
            await events.close()
            await pool.close()
            await asyncio.to_thread(client.destroy)

    app = FastAPI(
        title="Agent gateway",
        version="1",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    def state(request: Request | WebSocket) -> GatewayState:
        gateway: GatewayState = request.app.state.gateway
        return gateway

    def tenant_of(header: str | None) -> str:
        return header or settings.default_tenant

    @app.post("/agents/{sessionId}/runs", status_code=202, response_model=RunStarted)
    async def start_run(
        request: Request,
        session_id: SessionPath,
        body: RunRequest,
        x_tenant_id: TenantHeader = None,
    ) -> JSONResponse:
        started = await state(request).runs.start(
            tenant_of(x_tenant_id), session_id, body
        )
        return JSONResponse(started.model_dump(by_alias=True), status_code=202)

    @app.get("/runs/{executionId}", response_model=RunView)
    async def get_run(
        request: Request,
        execution_id: Annotated[str, Path(alias="executionId", max_length=128)],
        x_tenant_id: TenantHeader = None,
    ) -> JSONResponse:
        view = await state(request).runs.view(tenant_of(x_tenant_id), execution_id)
        return JSONResponse(view.model_dump(mode="json", by_alias=True))

    @app.post("/runs/{executionId}/cancel", response_model=RunView)
    async def cancel_run(
        request: Request,
        execution_id: Annotated[str, Path(alias="executionId", max_length=128)],
        x_tenant_id: TenantHeader = None,
    ) -> JSONResponse:
        view = await state(request).runs.cancel(tenant_of(x_tenant_id), execution_id)
        return JSONResponse(view.model_dump(mode="json", by_alias=True))

    @app.get("/runs/{executionId}/events", response_model=EventPage)
    async def run_events(
        request: Request,
        execution_id: Annotated[str, Path(alias="executionId", max_length=128)],
        after: Annotated[int | None, Query(ge=0)] = None,
        last_event_id_query: Annotated[
            int | None, Query(alias="lastEventId", ge=0)
        ] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
        x_tenant_id: TenantHeader = None,
    ) -> Any:
        gateway = state(request)
        record = await gateway.runs.record(tenant_of(x_tenant_id), execution_id)

        if after is not None:
            page = await gateway.events.replay_execution(execution_id, after)
            done = record.closed_by is not None and (
                not page or page[-1].event.type == record.closed_by
            )
            body = EventPage(
                events=page, next_after=page[-1].id if page else after, done=done
            )
            return JSONResponse(body.model_dump(mode="json", by_alias=True))

        resume_from = last_event_id_query or 0
        if last_event_id is not None:
            if not last_event_id.strip().isdigit():
                return error_response(
                    400,
                    "invalid_request",
                    "Last-Event-ID must be a non-negative integer",
                )
            resume_from = int(last_event_id)

        async def stream() -> AsyncIterator[ServerSentEvent]:
            async for event in gateway.events.follow_execution(
                execution_id, resume_from
            ):
                yield ServerSentEvent(
                    id=str(event.id),
                    event=event.event.type,
                    data=event.model_dump_json(by_alias=True),
                )

        return EventSourceResponse(stream(), ping=int(settings.sse_ping_seconds))

    @app.websocket("/ws/{sessionId}")
    async def session_socket(
        websocket: WebSocket,
        session_id: Annotated[str, Path(alias="sessionId")],
        last_event_id: Annotated[str | None, Query(alias="lastEventId")] = None,
    ) -> None:
        await serve_session_socket(
            websocket, state(websocket), session_id, last_event_id
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        ready, checks = await readiness(state(request))
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    return app


async def readiness(gateway: GatewayState) -> tuple[bool, dict[str, str]]:
    checks: dict[str, str] = {}
    try:
        await gateway.pool.fetchval("SELECT 1")
        checks["database"] = "ok"
    except (OSError, asyncpg.PostgresError) as error:
        return False, {"database": f"unreachable: {error}"}

    current = await asyncio.to_thread(migrate.current_revision, gateway.database_url)
    head = migrate.head_revision()
    checks["migrations"] = "ok" if current == head else f"at {current}, need {head}"

    live = await gateway.pool.fetchval(
        "SELECT count(*) FROM runners "
        "WHERE last_seen_at > now() - make_interval(secs => $1)",
        gateway.settings.runner_stale_seconds,
    )
    checks["runners"] = "ok" if live else "no runner has checked in"
    return all(value == "ok" for value in checks.values()), checks


async def serve_session_socket(
    websocket: WebSocket,
    gateway: GatewayState,
    session_id: str,
    last_event_id: str | None,
) -> None:
    tenant_id = websocket.headers.get("x-tenant-id") or gateway.settings.default_tenant
    problem = None
    if not is_valid_id(session_id):
        problem = f"sessionId may hold {ID_RULE}, up to 64 characters"
    elif not is_valid_id(tenant_id):
        problem = f"X-Tenant-Id may hold {ID_RULE}, up to 64 characters"
    elif last_event_id is not None and not last_event_id.isdigit():
        problem = "lastEventId must be a non-negative integer"
    await websocket.accept()
    if problem is not None:
        await _send(
            websocket,
            ServerError(error=ErrorBody(code="invalid_request", message=problem)),
        )
        await websocket.close(code=1008)
        return

    send_lock = asyncio.Lock()

    async def send(frame: BaseModel) -> None:
        async with send_lock:
            await _send(websocket, frame)

    async def forward_events() -> None:
        after = int(last_event_id or 0)
        async for event in gateway.events.follow_session(tenant_id, session_id, after):
            await send(ServerEvent(event=event))

    forwarder = asyncio.create_task(forward_events())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text") or message.get("bytes") or b""
            await handle_frame(gateway, tenant_id, session_id, raw, send)
    except WebSocketDisconnect:
        pass
    finally:
        forwarder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await forwarder
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close()


async def handle_frame(
    gateway: GatewayState,
    tenant_id: str,
    session_id: str,
    raw: str | bytes,
    send: Any,
) -> None:
    """Act on one client frame; any problem becomes an error frame, never a close."""
    try:
        frame = parse_client_message(raw)
    except ValidationError as error:
        summary = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'frame'}: {e['msg']}"
            for e in error.errors()[:3]
        )
        await send(ServerError(error=ErrorBody(code="invalid_frame", message=summary)))
        return

    try:
        if isinstance(frame, Ask):
            started = await gateway.runs.start(
                tenant_id,
                session_id,
                RunRequest(run_id=frame.run_id, message=frame.message),
            )
            await send(
                ServerAccepted(execution_id=started.execution_id, run_id=frame.run_id)
            )
        elif isinstance(frame, Cancel):
            record = await gateway.runs.record(tenant_id, frame.execution_id)
            if record.session_id != session_id:
                raise RunNotFound(frame.execution_id)
            await gateway.runs.cancel(tenant_id, frame.execution_id)
    except RunNotFound as error:
        await send(
            ServerError(
                error=ErrorBody(code="run_not_found", message=f"no run {error}")
            )
        )
    except RunConflict as error:
        await send(
            ServerError(error=ErrorBody(code="run_id_reused", message=str(error)))
        )


async def _send(websocket: WebSocket, frame: BaseModel) -> None:
    await websocket.send_text(frame.model_dump_json(by_alias=True))
