"""Lab 1: the contract.

Each check runs the reference echo runtime with one task's function taken from the
learner's file (see graders/conftest.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from capstone import echo
from capstone.testing import free_port, fresh_database, serve_in_task
from course.check import check

# A socket folder that does not exist: a database that is down.
DEAD_DATABASE = "postgresql://postgres@/agents?host=/nonexistent/lab01"


@dataclass
class EchoServer:
    database_url: str
    base_url: str


@pytest.fixture(scope="session")
def database_url() -> str:
    return fresh_database("agents_lab01")


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[EchoServer]:
    port = free_port()
    uvicorn_server, task = await serve_in_task(echo.create_echo_app(database_url), port)
    yield EchoServer(database_url, f"http://127.0.0.1:{port}")
    uvicorn_server.should_exit = True
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def down_server() -> AsyncIterator[EchoServer]:
    port = free_port()
    app = echo.create_echo_app(DEAD_DATABASE, readiness_timeout=0.5)
    uvicorn_server, task = await serve_in_task(app, port)
    yield EchoServer(DEAD_DATABASE, f"http://127.0.0.1:{port}")
    uvicorn_server.should_exit = True
    await asyncio.wait_for(task, 10)


def unique(label: str) -> str:
    return f"{label}-{time.monotonic_ns()}"


# Task 1 ----------------------------------------------------------------------


@pytest.mark.task(1)
async def test_ready_when_the_database_answers(database_url: str) -> None:
    """readiness(pool, timeout) with the database up, and with it down"""
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=2)
    try:
        ready, reason = await echo.readiness(pool, 1.0)
    finally:
        await pool.close()
    check(
        ready is True,
        called="readiness(pool on a running database, timeout=1.0)",
        got=(ready, reason),
        expected="(True, ...)",
    )
    dead = await asyncpg.create_pool(DEAD_DATABASE, min_size=0, max_size=2)
    started = time.monotonic()
    try:
        ready, reason = await echo.readiness(dead, 0.5)
    finally:
        await dead.close()
    check(
        ready is False and isinstance(reason, str) and reason,
        called="readiness(pool on a database that is down, timeout=0.5)",
        got=(ready, reason),
        expected="(False, a reason in words)",
    )
    check(
        time.monotonic() - started < 3,
        called="readiness(pool on a database that is down, timeout=0.5)",
        got=f"an answer after {time.monotonic() - started:.1f}s",
        expected="an answer within about the timeout",
    )


@pytest.mark.task(1)
async def test_probes_over_http(server: EchoServer, down_server: EchoServer) -> None:
    """GET /healthz and /readyz with the database up, and with it down"""
    async with httpx.AsyncClient(timeout=5) as client:
        up = [
            (await client.get(server.base_url + p)).status_code
            for p in ("/healthz", "/readyz")
        ]
        down = [
            (await client.get(down_server.base_url + p)).status_code
            for p in ("/healthz", "/readyz")
        ]
    check(
        up == [200, 200] and down == [200, 503],
        called="GET /healthz, /readyz; then the same with the database down",
        got=f"{up}, then {down}",
        expected="[200, 200], then [200, 503]: alive either way, ready only with it",
    )


# Task 2 ----------------------------------------------------------------------


@pytest.mark.task(2)
async def test_counts_are_rows_in_postgres(server: EchoServer) -> None:
    """POST /echo/{sessionId} three times in one session and once in another"""
    session, other = unique("s"), unique("o")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        counts = [
            (await client.post(f"/echo/{session}", json={"text": "hi"}))
            .json()
            .get("count")
            for _ in range(3)
        ]
        first_other = (await client.post(f"/echo/{other}", json={"text": "hi"})).json()
    check(
        counts == [1, 2, 3] and first_other.get("count") == 1,
        called="three echoes in one session, then one in another",
        got=f"counts {counts}, then {first_other.get('count')}",
        expected="counts [1, 2, 3], then 1",
    )
    conn = await asyncpg.connect(server.database_url)
    try:
        stored = await conn.fetchval(
            "SELECT echoes FROM echo_sessions WHERE session_id = $1", session
        )
    finally:
        await conn.close()
    check(
        stored == 3,
        called="SELECT echoes FROM echo_sessions for that session",
        got=stored,
        expected="3: the count is a row in Postgres, so a restart keeps it",
    )


@pytest.mark.task(2)
async def test_concurrent_echoes_count_once_each(server: EchoServer) -> None:
    """20 echoes of one session at the same moment"""
    session = unique("burst")
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        replies = await asyncio.gather(
            *(client.post(f"/echo/{session}", json={"text": "x"}) for _ in range(20))
        )
    counts = sorted(r.json().get("count", 0) for r in replies)
    check(
        counts == list(range(1, 21)),
        called="20 echoes of one session at once",
        got=f"counts {counts}",
        expected="each count from 1 to 20 exactly once",
    )


# Task 3 ----------------------------------------------------------------------


@pytest.mark.task(3)
def test_reply_names_the_session() -> None:
    """echo_reply("s1", "hello")"""
    reply = echo.echo_reply("s1", "hello")
    check(
        reply == "[s1] hello",
        called='echo_reply("s1", "hello")',
        got=repr(reply),
        expected="'[s1] hello'",
    )


@pytest.mark.task(3)
async def test_each_session_gets_its_own_echo(server: EchoServer) -> None:
    """POST /echo/{sessionId} from two sessions"""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        a = (await client.post("/echo/alice", json={"text": "hello"})).json()
        b = (await client.post("/echo/bob", json={"text": "hello"})).json()
    check(
        a.get("reply") == "[alice] hello" and b.get("reply") == "[bob] hello",
        called='POST /echo/alice and /echo/bob with {"text": "hello"}',
        got=(a.get("reply"), b.get("reply")),
        expected="('[alice] hello', '[bob] hello')",
    )
