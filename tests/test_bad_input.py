"""Bad input gets a clear JSON error with a 4xx and changes nothing."""

import asyncio
import json

import httpx
import pytest
import websockets

from capstone.domain import MAX_MESSAGE_CHARS
from tests.conftest import Stack


async def row_counts(stack: Stack) -> tuple[int, int]:
    pool = stack.runner.pool
    return (
        await pool.fetchval("SELECT count(*) FROM runs"),
        await pool.fetchval("SELECT count(*) FROM agent_events"),
    )


def assert_error(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body
    assert "Traceback" not in reply.text


@pytest.mark.parametrize(
    ("path", "content", "status", "code"),
    [
        ("/agents/s1/runs", b"{not json", 400, "malformed_json"),
        ("/agents/s1/runs", b'{"runId": "r1"}', 422, "invalid_request"),
        ("/agents/s1/runs", b'{"message": "hi"}', 422, "invalid_request"),
        (
            "/agents/s1/runs",
            b'{"runId": "r 1", "message": "hi"}',
            422,
            "invalid_request",
        ),
        ("/agents/s1/runs", b'{"runId": "r1", "message": ""}', 422, "invalid_request"),
        (
            "/agents/s1/runs",
            b'{"runId": "r1", "message": "hi", "x": 1}',
            422,
            "invalid_request",
        ),
        ("/agents/s1/runs", b"[]", 422, "invalid_request"),
        (
            "/agents/bad$id/runs",
            b'{"runId": "r1", "message": "hi"}',
            422,
            "invalid_request",
        ),
        (
            "/agents/a%20b/runs",
            b'{"runId": "r1", "message": "hi"}',
            422,
            "invalid_request",
        ),
        (
            "/agents/" + "s" * 65 + "/runs",
            b'{"runId": "r1", "message": "hi"}',
            422,
            "invalid_request",
        ),
    ],
)
async def test_bad_start_requests(
    stack: Stack, path: str, content: bytes, status: int, code: str
) -> None:
    before = await row_counts(stack)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        reply = await client.post(
            path, content=content, headers={"content-type": "application/json"}
        )
    assert_error(reply, status, code)
    assert await row_counts(stack) == before


async def test_message_over_the_limit(stack: Stack) -> None:
    before = await row_counts(stack)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        too_long = await client.post(
            "/agents/s1/runs",
            json={"runId": "long", "message": "x" * (MAX_MESSAGE_CHARS + 1)},
        )
        huge = await client.post(
            "/agents/s1/runs", json={"runId": "huge", "message": "x" * 200_000}
        )
    assert_error(too_long, 422, "invalid_request")
    assert "message" in too_long.json()["error"]["message"]
    assert_error(huge, 413, "payload_too_large")
    assert await row_counts(stack) == before


async def test_unknown_execution_ids(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for reply in (
            await client.get("/runs/run-doesnotexist"),
            await client.post("/runs/run-doesnotexist/cancel"),
            await client.get("/runs/run-doesnotexist/events", params={"after": 0}),
            await client.get("/runs/run-doesnotexist/events"),
        ):
            assert_error(reply, 404, "run_not_found")
        assert_error(await client.get("/no/such/route"), 404, "not_found")
        assert_error(
            await client.get("/runs/x/events", headers={"Last-Event-ID": "abc"}),
            404,
            "run_not_found",
        )


async def test_another_tenants_run_is_not_found(stack: Stack, session_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        reply = await client.post(
            f"/agents/{session_id}/runs",
            json={"runId": "mine", "message": "hi"},
            headers={"X-Tenant-Id": "acme"},
        )
        execution_id = reply.json()["executionId"]
        assert (
            await client.get(f"/runs/{execution_id}", headers={"X-Tenant-Id": "acme"})
        ).status_code == 200
        assert_error(
            await client.get(
                f"/runs/{execution_id}", headers={"X-Tenant-Id": "globex"}
            ),
            404,
            "run_not_found",
        )


async def test_malformed_socket_frames_get_error_frames(
    stack: Stack, session_id: str
) -> None:
    before = await row_counts(stack)
    async with websockets.connect(f"{stack.ws_url}/ws/{session_id}") as socket:
        for frame in (
            "{not json",
            json.dumps({"type": "ask"}),
            json.dumps({"type": "dance"}),
            json.dumps(
                {"type": "ask", "runId": "r1", "message": "x" * (MAX_MESSAGE_CHARS + 1)}
            ),
            json.dumps({"type": "cancel", "executionId": "run-unknown"}),
            b"\x00\x01binary",
        ):
            await socket.send(frame)
            reply = json.loads(await asyncio.wait_for(socket.recv(), 5))
            assert reply["type"] == "error", reply
            assert reply["error"]["message"]
        assert await row_counts(stack) == before

        # The connection carries on: a good Ask is accepted and its run streams.
        await socket.send(
            json.dumps({"type": "ask", "runId": "ok", "message": "still here"})
        )
        seen = []
        async with asyncio.timeout(15):
            while "completed" not in seen:
                frame = json.loads(await socket.recv())
                if frame["type"] == "event":
                    seen.append(frame["event"]["event"]["type"])
                else:
                    assert frame["type"] == "accepted", frame
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_socket_with_bad_session_id_is_refused(stack: Stack) -> None:
    async with websockets.connect(f"{stack.ws_url}/ws/bad$id") as socket:
        reply = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert reply["type"] == "error"
        assert "sessionId" in reply["error"]["message"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_probes(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "runners": "ok",
    }
