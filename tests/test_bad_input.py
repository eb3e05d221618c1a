"""Bad input gets a clear JSON error with a 4xx and changes nothing."""

import asyncio
import json

import httpx
import pytest
import websockets

from capstone.domain import MAX_MESSAGE_CHARS
from tests.conftest import Stack


async def row_counts(stack: Stack, session_id: str = "s1") -> tuple[int, int]:
    """Rows of one session: other tests' runs may still be writing theirs."""
    pool = stack.runner.pool
    return (
        await pool.fetchval(
            "SELECT count(*) FROM runs WHERE session_id = $1", session_id
        ),
        await pool.fetchval(
            "SELECT count(*) FROM agent_events WHERE session_id = $1", session_id
        ),
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
            "/agents/s1/runs",
            b'{"runId": "r1", "message": "   "}',
            422,
            "invalid_request",
        ),
        (
            "/agents/s1/runs",
            b'{"runId": "r1", "message": "a\\u0000b"}',
            422,
            "invalid_request",
        ),
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
    before = await row_counts(stack, session_id)
    async with websockets.connect(f"{stack.ws_url}/ws/{session_id}") as socket:
        for frame in (
            "{not json",
            json.dumps({"type": "ask"}),
            json.dumps({"type": "dance"}),
            json.dumps(
                {"type": "ask", "runId": "r1", "message": "x" * (MAX_MESSAGE_CHARS + 1)}
            ),
            json.dumps({"type": "cancel", "executionId": "run-unknown"}),
            json.dumps({"type": "cancel", "executionId": "a\u0000b"}),
            json.dumps({"type": "ask", "runId": "r2", "message": "a\u0000b"}),
            json.dumps({"type": "ask", "runId": "r3", "message": " "}),
            b"\x00\x01binary",
        ):
            await socket.send(frame)
            reply = json.loads(await asyncio.wait_for(socket.recv(), 5))
            assert reply["type"] == "error", reply
            assert reply["error"]["message"]
        assert await row_counts(stack, session_id) == before

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


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/runs/a%00b", {}, 422),
        ("/runs/a%00b/events?after=0", {}, 422),
        ("/runs/run-x/events?after=9223372036854775808", {}, 422),
        ("/runs/run-x/events?after=-1", {}, 422),
        ("/runs/run-x/events?lastEventId=99999999999999999999", {}, 422),
    ],
)
async def test_malformed_ids_and_cursors(
    stack: Stack, path: str, headers: dict[str, str], status: int
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        assert_error(await client.get(path, headers=headers), status, "invalid_request")


async def test_malformed_last_event_id_header(stack: Stack, session_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        reply = await client.post(
            f"/agents/{session_id}/runs", json={"runId": "h", "message": "hi"}
        )
        events_url = f"/runs/{reply.json()['executionId']}/events"
        # b"\xb2" is the superscript two, a character str.isdigit() accepts.
        for bad in (b"abc", b"-1", b"99999999999999999999", b"\xb2", b"1000000"):
            reply = await client.get(events_url, headers={"Last-Event-ID": bad})
            assert_error(reply, 400, "invalid_request")


async def test_chunked_body_over_the_limit(stack: Stack) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"runId": "chunked", "message": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    before = await row_counts(stack)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        reply = await client.post(
            "/agents/s1/runs",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
    assert_error(reply, 413, "payload_too_large")
    assert await row_counts(stack) == before


async def test_chunked_body_under_the_limit_is_read(
    stack: Stack, session_id: str
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"runId": "chunked", '
        yield b'"message": "in two parts"}'

    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        reply = await client.post(
            f"/agents/{session_id}/runs",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
    assert reply.status_code == 202, reply.text


async def test_body_that_is_not_json(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        plain = await client.post(
            "/agents/s1/runs", content=b"hello", headers={"content-type": "text/plain"}
        )
        form = await client.post("/agents/s1/runs", data={"runId": "f", "message": "x"})
    assert_error(plain, 415, "unsupported_media_type")
    assert_error(form, 415, "unsupported_media_type")


async def test_tenant_header_must_be_single_and_well_formed(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        twice = await client.post(
            "/agents/s1/runs",
            json={"runId": "t", "message": "hi"},
            headers=[("X-Tenant-Id", "acme"), ("X-Tenant-Id", "default")],
        )
        empty = await client.get("/runs/run-x", headers={"X-Tenant-Id": ""})
        bad = await client.get("/runs/run-x", headers={"X-Tenant-Id": "a/b"})
    assert_error(twice, 400, "invalid_request")
    assert_error(empty, 422, "invalid_request")
    assert_error(bad, 422, "invalid_request")


@pytest.mark.parametrize(
    ("query", "headers", "problem"),
    [
        ("?lastEventId=abc", {}, "lastEventId"),
        ("?lastEventId=99999999999999999999", {}, "lastEventId"),
        ("?lastEventId=%C2%B2", {}, "lastEventId"),
        ("?lastEventId=1000000", {}, "ahead"),
        ("", {"X-Tenant-Id": ""}, "X-Tenant-Id"),
    ],
)
async def test_socket_refuses_bad_cursors_and_tenants(
    stack: Stack, session_id: str, query: str, headers: dict[str, str], problem: str
) -> None:
    url = f"{stack.ws_url}/ws/{session_id}{query}"
    async with websockets.connect(url, additional_headers=headers) as socket:
        reply = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert reply["type"] == "error" and problem in reply["error"]["message"], reply
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_socket_cancel_gets_an_answer(stack: Stack, session_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        reply = await client.post(
            f"/agents/{session_id}/runs", json={"runId": "c", "message": "hi"}
        )
        execution_id = reply.json()["executionId"]
        async with asyncio.timeout(15):
            while (await client.get(f"/runs/{execution_id}")).json()[
                "status"
            ] != "completed":
                await asyncio.sleep(0.05)
    head = await stack.runner.events.stream_head("default", session_id)
    async with websockets.connect(
        f"{stack.ws_url}/ws/{session_id}?lastEventId={head}"
    ) as socket:
        await socket.send(json.dumps({"type": "cancel", "executionId": execution_id}))
        answer = json.loads(await asyncio.wait_for(socket.recv(), 5))
    assert answer == {
        "type": "cancel_result",
        "executionId": execution_id,
        "status": "completed",
    }
