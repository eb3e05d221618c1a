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
from fastapi import Depends, FastAPI, Header, Path, Query, Request, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sse_starlette import EventSourceResponse, ServerSentEvent

from capstone import devdb, migrate
from capstone.domain import (
    MAX_EVENT_ID,
    ErrorResponse,
    RunRequest,
    RunStarted,
    RunView,
    StoredEvent,
    parse_event_id,
)
from capstone.domain.ids import ID_PATTERN
from capstone.eventstore import DATABASE_OUTAGE, EventStore
from capstone.gateway.errors import BodySizeLimit, install_error_handlers
from capstone.gateway.runs import RunService
from capstone.gateway.socket import serve_session_socket
from capstone.gateway.tenancy import ClientError, tenant_of

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


class EventPage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    events: list[StoredEvent]
    next_after: int = Field(alias="nextAfter")
    done: bool


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
ExecutionPath = Annotated[
    str, Path(alias="executionId", min_length=1, max_length=128, pattern=ID_PATTERN)
]
Cursor = Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID)]


def gateway_of(request: Request) -> GatewayState:
    gateway: GatewayState = request.app.state.gateway
    return gateway


def request_tenant(request: Request) -> str:
    return tenant_of(request, gateway_of(request).settings.default_tenant)


def json_body(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ClientError(
            415, "unsupported_media_type", "send the body as application/json"
        )


Gateway = Annotated[GatewayState, Depends(gateway_of)]
Tenant = Annotated[str, Depends(request_tenant)]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error replies a route can give."""
    return {status: {"model": ErrorResponse} for status in statuses}


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database_url = settings.database_url or devdb.database_url()
        await asyncio.to_thread(migrate.upgrade, database_url)
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
        events = EventStore(pool)
        # retry_connection_errors=False: while the database is down, requests
        # fail fast with 503 instead of hanging inside the client.
        client = DBOSClient(
            system_database_url=database_url,
            application_name="agents",
            retry_connection_errors=False,
        )
        runs = RunService(pool, events, client)
        app.state.gateway = GatewayState(
            settings, database_url, pool, events, runs, client
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

    @app.post(
        "/agents/{sessionId}/runs",
        status_code=202,
        response_model=RunStarted,
        responses=_errors(400, 409, 413, 415, 422, 503),
        dependencies=[Depends(json_body)],
    )
    async def start_run(
        gateway: Gateway, tenant_id: Tenant, session_id: SessionPath, body: RunRequest
    ) -> JSONResponse:
        """Start a run. The same runId in the same session always returns the same
        execution; a runId reused for a different message is refused with 409."""
        started = await gateway.runs.start(tenant_id, session_id, body)
        return JSONResponse(started.model_dump(by_alias=True), status_code=202)

    @app.get("/runs/{executionId}", response_model=RunView, responses=_errors(404, 503))
    async def get_run(
        gateway: Gateway, tenant_id: Tenant, execution_id: ExecutionPath
    ) -> JSONResponse:
        view = await gateway.runs.view(tenant_id, execution_id)
        return JSONResponse(view.model_dump(mode="json", by_alias=True))

    @app.post(
        "/runs/{executionId}/cancel",
        response_model=RunView,
        responses=_errors(404, 503),
    )
    async def cancel_run(
        gateway: Gateway, tenant_id: Tenant, execution_id: ExecutionPath
    ) -> JSONResponse:
        """Cancel a queued or running run. A finished run is returned unchanged."""
        view = await gateway.runs.cancel(tenant_id, execution_id)
        return JSONResponse(view.model_dump(mode="json", by_alias=True))

    @app.get(
        "/runs/{executionId}/events",
        response_model=EventPage,
        responses={
            200: {
                "description": "Server-Sent Events (text/event-stream), or with "
                "?after=N one JSON page of stored events",
                "content": {"text/event-stream": {}},
            },
            **_errors(400, 404, 422, 503),
        },
    )
    async def run_events(
        gateway: Gateway,
        tenant_id: Tenant,
        execution_id: ExecutionPath,
        after: Cursor = None,
        last_event_id_query: Annotated[
            int | None, Query(alias="lastEventId", ge=0, le=MAX_EVENT_ID)
        ] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> Any:
        """The run's events. As SSE (the default) it replays what is stored after
        ``Last-Event-ID`` (or ``lastEventId``), then follows live and ends after the
        run's terminal event. With ``?after=N`` it returns a JSON page instead."""
        record = await gateway.runs.record(tenant_id, execution_id)

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
            try:
                resume_from = parse_event_id(last_event_id)
            except ValueError as error:
                raise ClientError(
                    400, "invalid_request", f"Last-Event-ID: {error}"
                ) from None

        head = await gateway.events.stream_head(record.tenant_id, record.session_id)
        if resume_from > head:
            # A cursor from another stream would hide every event up to it.
            raise ClientError(
                400,
                "invalid_request",
                f"event id {resume_from} is ahead of this session's stream, which "
                f"ends at {head}; resume from {head} or lower",
            )

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
        gateway: GatewayState = websocket.app.state.gateway
        await serve_session_socket(
            websocket,
            gateway.runs,
            gateway.events,
            settings.default_tenant,
            session_id,
            last_event_id,
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(gateway: Gateway) -> JSONResponse:
        ready, checks = await readiness(gateway)
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    return app


async def readiness(gateway: GatewayState) -> tuple[bool, dict[str, str]]:
    checks: dict[str, str] = {}
    try:
        await gateway.pool.fetchval("SELECT 1")
        checks["database"] = "ok"
    except (*DATABASE_OUTAGE, asyncpg.PostgresError) as error:
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
