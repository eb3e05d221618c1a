"""Resume a stream from any event id: the rest arrives whole, in order, once."""

import asyncio
import uuid

import httpx
import pytest

from capstone import sessions
from capstone.domain import Token
from capstone.eventstore import KeyedEvent
from tests.conftest import Stack
from tests.helpers import all_events, read_socket, read_sse, start_run, wait_final

TOKENS = 2000


@pytest.fixture
async def counting_run(stack: Stack, session_id: str) -> tuple[str, list[dict]]:
    """A finished run that streamed 2,000 tokens, and its stored events."""
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        execution_id = await start_run(
            client, session_id, "count", f"count to {TOKENS}"
        )
        assert (await wait_final(client, execution_id))["status"] == "completed"
        events = await all_events(client, execution_id)
    assert sum(e["event"]["type"] == "token" for e in events) == TOKENS
    return execution_id, events


def assert_whole_and_in_order(received: list[dict], expected: list[dict]) -> None:
    ids = [e["id"] for e in received]
    assert len(ids) == len(set(ids)), "duplicate events"
    assert ids == sorted(ids), "events out of order"
    assert ids == [e["id"] for e in expected]


async def test_sse_resume_from_the_thousandth_event(
    stack: Stack, counting_run: tuple[str, list[dict]]
) -> None:
    execution_id, events = counting_run
    tokens = [e for e in events if e["event"]["type"] == "token"]
    resume_from = tokens[999]["id"]
    expected = [e for e in events if e["id"] > resume_from]
    assert sum(e["event"]["type"] == "token" for e in expected) == 1000

    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        received = await read_sse(client, execution_id, last_event_id=resume_from)
    assert_whole_and_in_order(received, expected)
    assert received[-1]["event"]["type"] == "completed"


async def test_websocket_resume_from_the_thousandth_event(
    stack: Stack, session_id: str, counting_run: tuple[str, list[dict]]
) -> None:
    _, events = counting_run
    tokens = [e for e in events if e["event"]["type"] == "token"]
    resume_from = tokens[999]["id"]
    expected = [e for e in events if e["id"] > resume_from]

    received = await read_socket(
        stack.ws_url,
        session_id,
        resume_from,
        count=len(expected),
        quiet_seconds=20,
        then_wait=0.5,
    )
    assert_whole_and_in_order(received, expected)


async def test_reconnect_during_a_live_run_has_no_gap(
    stack: Stack, session_id: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        execution_id = await start_run(client, session_id, "live", f"count to {TOKENS}")
        first = await read_sse(client, execution_id, stop_after=700)
        rest = await read_sse(client, execution_id, last_event_id=first[-1]["id"])
        stored = await all_events(client, execution_id)
    assert_whole_and_in_order(first + rest, stored)


async def test_two_tabs_see_the_same_stream(stack: Stack, session_id: str) -> None:
    tabs = [
        asyncio.create_task(
            read_socket(
                stack.ws_url, session_id, 0, until_type="completed", quiet_seconds=20
            )
        )
        for _ in range(2)
    ]
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        await start_run(client, session_id, "tabs", "count to 300")
        one, two = await asyncio.gather(*tabs)
    assert [e["id"] for e in one] == [e["id"] for e in two]
    assert sum(e["event"]["type"] == "token" for e in one) == 300


async def test_late_committing_writers_are_never_skipped(stack: Stack) -> None:
    """Writers racing on one stream while a reader follows it: ids 1..N, each once."""
    store = stack.runner.events
    pool = stack.runner.pool
    session = "race-" + uuid.uuid4().hex[:8]
    writers, per_writer = 6, 150
    executions = []
    for w in range(writers):
        record, _ = await sessions.create_run(pool, "default", session, f"w{w}", "race")
        executions.append(record.execution_id)

    async def write(execution_id: str) -> None:
        for i in range(0, per_writer, 5):
            batch = [
                KeyedEvent(f"t{i + j}", Token(index=i + j, text="x")) for j in range(5)
            ]
            await store.append(execution_id, batch)
            await asyncio.sleep(0)

    async def follow() -> list[int]:
        seen: list[int] = []
        async for event in store.follow_session("default", session, 0):
            seen.append(event.id)
            if len(seen) == writers * per_writer:
                return seen
        return seen

    reader = asyncio.create_task(follow())
    await asyncio.gather(*(write(e) for e in executions))
    # Appending the same keys again stores nothing.
    await asyncio.gather(*(write(e) for e in executions))
    seen = await asyncio.wait_for(reader, 20)
    assert seen == list(range(1, writers * per_writer + 1))
    stored = await store.replay_session("default", session, 0, limit=10_000)
    assert [e.id for e in stored] == seen
