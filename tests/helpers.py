"""Small clients for the tests: the gateway's HTTP API, its SSE and its WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets
from httpx_sse import aconnect_sse

FINAL = ("completed", "failed", "cancelled")


async def start_run(
    client: httpx.AsyncClient, session_id: str, run_id: str, message: str
) -> str:
    reply = await client.post(
        f"/agents/{session_id}/runs", json={"runId": run_id, "message": message}
    )
    assert reply.status_code == 202, reply.text
    return str(reply.json()["executionId"])


async def wait_final(
    client: httpx.AsyncClient, execution_id: str, timeout: float = 30
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            view = (await client.get(f"/runs/{execution_id}")).json()
            if view["status"] in FINAL:
                return dict(view)
            await asyncio.sleep(0.05)


async def all_events(
    client: httpx.AsyncClient, execution_id: str
) -> list[dict[str, Any]]:
    """Every stored event of a run, through the JSON pages of ?after=N."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (
            await client.get(f"/runs/{execution_id}/events", params={"after": after})
        ).json()
        events += page["events"]
        if not page["events"]:
            return events
        after = page["nextAfter"]


async def read_sse(
    client: httpx.AsyncClient,
    execution_id: str,
    last_event_id: int | None = None,
    stop_after: int | None = None,
) -> list[dict[str, Any]]:
    """Read a run's SSE stream to its end (or ``stop_after`` events); hang up."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    received: list[dict[str, Any]] = []
    async with aconnect_sse(
        client, "GET", f"/runs/{execution_id}/events", headers=headers
    ) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            event = json.loads(sse.data)
            assert sse.id == str(event["id"])
            received.append(event)
            if stop_after is not None and len(received) >= stop_after:
                break
    return received


async def read_socket(
    ws_url: str,
    session_id: str,
    last_event_id: int | None,
    until_type: str | None = None,
    count: int | None = None,
    quiet_seconds: float = 0.5,
    then_wait: float = 0.0,
) -> list[dict[str, Any]]:
    """Read event frames from the session socket until a type, a count, or silence.

    After a count is reached, ``then_wait`` seconds more are read, so a frame that
    should not be there (a duplicate, say) is caught rather than left unread.
    """
    query = "" if last_event_id is None else f"?lastEventId={last_event_id}"
    events: list[dict[str, Any]] = []
    async with websockets.connect(f"{ws_url}/ws/{session_id}{query}") as socket:
        while True:
            done = count is not None and len(events) >= count
            try:
                raw = await asyncio.wait_for(
                    socket.recv(), then_wait if done else quiet_seconds
                )
            except TimeoutError:
                return events
            frame = json.loads(raw)
            assert frame["type"] == "event", frame
            events.append(frame["event"])
            if until_type and frame["event"]["event"]["type"] == until_type:
                return events
