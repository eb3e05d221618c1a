"""``WS /ws/{sessionId}?lastEventId=N``: a session's events, replayed then live.

Two tasks share the socket. One forwards the session's stream from ``lastEventId``
on; the other reads the client's frames (Ask, Cancel) and answers each one. A frame
the gateway cannot act on gets an error frame and the connection carries on. The
socket closes only when the request itself is wrong (1008) or the stream cannot be
followed any more (1011), so the client reconnects with its last id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from capstone.domain import (
    Ask,
    Cancel,
    ErrorBody,
    RunRequest,
    ServerAccepted,
    ServerCancelled,
    ServerError,
    ServerEvent,
    is_valid_id,
    parse_client_message,
    parse_event_id,
)
from capstone.domain.ids import ID_RULE
from capstone.eventstore import EventStore
from capstone.gateway.errors import UNAVAILABLE
from capstone.gateway.runs import RunNotFound, RunService
from capstone.gateway.tenancy import ClientError, tenant_of
from capstone.sessions import RunConflict

log = logging.getLogger("capstone.gateway")

POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011

Send = Callable[[BaseModel], Awaitable[None]]


def _error(code: str, message: str) -> ServerError:
    return ServerError(error=ErrorBody(code=code, message=message))


async def _starting_cursor(
    events: EventStore, tenant_id: str, session_id: str, last_event_id: str | None
) -> int:
    if not is_valid_id(session_id):
        raise ClientError(
            422, "invalid_request", f"sessionId may hold {ID_RULE}, up to 64 characters"
        )
    if last_event_id is None:
        return 0
    try:
        cursor = parse_event_id(last_event_id)
    except ValueError as error:
        raise ClientError(422, "invalid_request", f"lastEventId: {error}") from None
    head = await events.stream_head(tenant_id, session_id)
    if cursor > head:
        # A cursor from another stream (or a database restored from backup):
        # following it would silently hide the events up to that id.
        raise ClientError(
            422,
            "invalid_request",
            f"lastEventId {cursor} is ahead of this session's stream, which ends "
            f"at {head}; reconnect with lastEventId={head} or lower",
        )
    return cursor


async def serve_session_socket(
    websocket: WebSocket,
    runs: RunService,
    events: EventStore,
    default_tenant: str,
    session_id: str,
    last_event_id: str | None,
) -> None:
    await websocket.accept()
    send_lock = asyncio.Lock()

    async def send(frame: BaseModel) -> None:
        async with send_lock:
            await websocket.send_text(frame.model_dump_json(by_alias=True))

    try:
        tenant_id = tenant_of(websocket, default_tenant)
        cursor = await _starting_cursor(events, tenant_id, session_id, last_event_id)
    except ClientError as error:
        await send(_error(error.code, error.message))
        await websocket.close(code=POLICY_VIOLATION)
        return
    except UNAVAILABLE:
        await send(_error("unavailable", "the database is unavailable; retry later"))
        await websocket.close(code=INTERNAL_ERROR)
        return

    async def forward_events() -> None:
        try:
            async for event in events.follow_session(tenant_id, session_id, cursor):
                await send(ServerEvent(event=event))
        except (WebSocketDisconnect, RuntimeError):
            return
        except Exception:
            log.exception("cannot follow session %s/%s", tenant_id, session_id)
            with contextlib.suppress(Exception):
                await websocket.close(code=INTERNAL_ERROR)

    forwarder = asyncio.create_task(forward_events())
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text") or message.get("bytes") or b""
            await handle_frame(runs, tenant_id, session_id, raw, send)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        forwarder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await forwarder
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close()


async def handle_frame(
    runs: RunService, tenant_id: str, session_id: str, raw: str | bytes, send: Send
) -> None:
    """Act on one client frame; every outcome is a frame back, never a close."""
    try:
        frame = parse_client_message(raw)
    except ValidationError as error:
        summary = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'frame'}: {e['msg']}"
            for e in error.errors()[:3]
        )
        await send(_error("invalid_frame", summary))
        return

    try:
        if isinstance(frame, Ask):
            request = RunRequest(run_id=frame.run_id, message=frame.message)
            started = await runs.start(tenant_id, session_id, request)
            await send(
                ServerAccepted(execution_id=started.execution_id, run_id=frame.run_id)
            )
        elif isinstance(frame, Cancel):
            record = await runs.record(tenant_id, frame.execution_id)
            if record.session_id != session_id:
                raise RunNotFound(frame.execution_id)
            view = await runs.cancel(tenant_id, frame.execution_id)
            await send(
                ServerCancelled(execution_id=view.execution_id, status=view.status)
            )
    except RunNotFound as error:
        await send(_error("run_not_found", f"no run {error} in this session"))
    except RunConflict as error:
        await send(_error("run_id_reused", str(error)))
    except UNAVAILABLE as error:
        log.warning("frame refused, database unavailable: %s", error)
        await send(_error("unavailable", "the database is unavailable; retry later"))
    except Exception:
        log.exception("frame failed on session %s/%s", tenant_id, session_id)
        await send(_error("internal_error", "the gateway failed; the error is logged"))
