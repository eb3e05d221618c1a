"""The edge in front of a running gateway: requests, Server-Sent Events and
WebSockets pass through; a tenant over its limit gets 429 with Retry-After; a
gateway that is gone gives 502, never a traceback."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets

from capstone.edge.app import EdgeSettings, create_app
from capstone.edge.ratelimit import Decision, RateBasedBan, RateLimit
from capstone.local import free_port
from capstone.testing import serve_in_task
from tests.conftest import Stack
from tests.helpers import read_sse, start_run, wait_final


@contextlib.asynccontextmanager
async def running_edge(gateway_url: str, **settings: object) -> AsyncIterator[str]:
    port = free_port()
    app = create_app(EdgeSettings(GATEWAY_URL=gateway_url, **settings))
    server, task = await serve_in_task(app, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def edge(stack: Stack) -> AsyncIterator[str]:
    async with running_edge(stack.base_url) as url:
        yield url


async def test_a_run_through_the_edge(edge: str, session_id: str) -> None:
    async with httpx.AsyncClient(base_url=edge, timeout=30) as client:
        execution_id = await start_run(client, session_id, "r1", "hello edge")
        view = await wait_final(client, execution_id)
        assert view["status"] == "completed"
        events = await read_sse(client, execution_id)
        assert events[-1]["event"]["type"] == "completed"
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)

        # Errors come back as the gateway made them.
        missing = await client.get("/runs/does-not-exist")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"]
        assert (await client.get("/readyz")).status_code == 200


async def test_a_websocket_through_the_edge(edge: str, session_id: str) -> None:
    url = edge.replace("http", "ws", 1) + f"/ws/{session_id}"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"type": "ask", "runId": "w1", "message": "hi"}))
        accepted = json.loads(await socket.recv())
        assert accepted["type"] == "accepted" and accepted["runId"] == "w1"
        kinds: list[str] = []
        while "completed" not in kinds:
            frame = json.loads(await socket.recv())
            assert frame["type"] == "event", frame
            kinds.append(frame["event"]["event"]["type"])
        assert kinds[0] == "run_accepted"

        # A malformed frame gets the gateway's error frame, and the socket lives.
        await socket.send("not json")
        assert json.loads(await socket.recv())["type"] == "error"


async def test_a_tenant_over_its_limit_is_refused(stack: Stack) -> None:
    async with running_edge(
        stack.base_url, rate_count=3, rate_interval_seconds=60, rate_ban_seconds=120
    ) as edge:
        async with httpx.AsyncClient(base_url=edge) as client:
            acme = {"x-tenant-id": "acme"}
            codes = [(await client.get("/healthz", headers=acme)).status_code]
            for _ in range(3):
                codes.append((await client.get("/runs/x", headers=acme)).status_code)
            refused = await client.get("/runs/x", headers=acme)
            other = await client.get("/runs/x", headers={"x-tenant-id": "globex"})
    assert codes == [200, 404, 404, 404]  # /healthz is the edge's own, not counted
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 120
    assert refused.json()["error"]["code"] == "rate_limited"
    assert other.status_code == 404


async def test_callers_without_a_tenant_are_counted_by_address(stack: Stack) -> None:
    async with running_edge(stack.base_url, anonymous_rate_count=2) as edge:
        async with httpx.AsyncClient(base_url=edge) as client:

            async def get(**headers: str) -> int:
                return (await client.get("/runs/x", headers=headers)).status_code

            # The load balancer appends "client, balancer": the caller is 2nd to last.
            first = {"x-forwarded-for": "203.0.113.9, 198.51.100.1"}
            spoofed = {"x-forwarded-for": "10.0.0.1, 203.0.113.9, 198.51.100.1"}
            second = {"x-forwarded-for": "203.0.113.77, 198.51.100.1"}
            codes = [await get(**first), await get(**spoofed), await get(**first)]
            others = [await get(**second), await get(**{"x-tenant-id": "acme"})]
    assert codes == [404, 404, 429], "a made-up first hop is the same caller"
    assert others == [404, 404], "another address, or a tenant, has its own count"


ODD_PATHS = [
    "/runs/x%3Fafter=1",
    "/runs/x%23y/events",
    "/x%2F..%2Fruns/zzz",
    "/runs/%00",
    "/agents/a%20b/runs",
]


@pytest.mark.parametrize("path", ODD_PATHS)
async def test_odd_paths_reach_the_gateway_as_sent(
    edge: str, stack: Stack, path: str
) -> None:
    # The same bytes to the gateway directly and through the edge: same answer.
    async with httpx.AsyncClient() as client:
        direct = await client.get(stack.base_url + path)
        through = await client.get(edge + path)
    assert through.status_code == direct.status_code, (path, through.text)
    assert through.status_code < 500
    assert through.json() == direct.json()


async def test_bad_tenant_headers_are_refused_like_the_gateway_does(edge: str) -> None:
    async with httpx.AsyncClient(base_url=edge) as client:
        long = await client.get("/runs/x", headers={"x-tenant-id": "t" * 60_000})
        twice = await client.get(
            "/runs/x", headers=[("x-tenant-id", "a"), ("x-tenant-id", "b")]
        )
        method = await client.request("TRACE", "/runs/x")
    assert long.status_code == 422 and long.json()["error"]["code"]
    assert twice.status_code == 400
    assert method.status_code == 405 and method.json()["error"]["code"] == "http_405"


async def test_a_refused_socket_is_closed_with_a_reason(stack: Stack) -> None:
    async with running_edge(stack.base_url, rate_count=1) as edge:
        url = edge.replace("http", "ws", 1) + "/ws/s-refused"
        headers = {"x-tenant-id": "acme"}
        async with websockets.connect(url, additional_headers=headers):
            pass
        async with websockets.connect(url, additional_headers=headers) as socket:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "rate limited" in closed.value.rcvd.reason


async def test_a_missing_gateway_is_a_502() -> None:
    async with running_edge(f"http://127.0.0.1:{free_port()}") as edge:
        async with httpx.AsyncClient(base_url=edge) as client:
            reply = await client.get("/runs/x")
            ready = await client.get("/readyz")
    assert reply.status_code == 502
    assert reply.json()["error"]["code"] == "bad_gateway"
    assert ready.status_code == 503


def test_a_flood_of_made_up_tenants_does_not_grow_memory() -> None:
    limiter = RateBasedBan(RateLimit(5, 60, 300), max_keys=100)
    for index in range(100):
        assert limiter.check(f"t{index}", 0.0).allowed
    # Full, and every key still inside its window: new keys are refused.
    assert limiter.check("newcomer", 1.0) == Decision(False, 60)
    assert limiter.check("t5", 1.0).allowed, "known tenants carry on"
    # A window later the idle keys are forgotten and there is room again.
    assert limiter.check("newcomer", 61.0).allowed
    assert len(limiter._windows) == 1
