"""Lab 12: realtime.

Each check runs the reference capstone with one task's function taken from the
learner's file (see graders/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import websockets

from capstone import sessions
from capstone.domain import Completed, Token, Usage
from capstone.eventstore import KeyedEvent, new_events
from capstone.testing import Stack
from course.check import check


def unique(label: str) -> str:
    return f"{label}-{time.monotonic_ns()}"


def tokens(start: int, count: int, prefix: str = "t") -> list[KeyedEvent]:
    return [
        KeyedEvent(f"{prefix}{i}", Token(index=i, text="x"))
        for i in range(start, start + count)
    ]


async def new_run(stack: Stack, session: str, run_id: str) -> str:
    record, _ = await sessions.create_run(
        stack.runner.pool, "default", session, run_id, "test"
    )
    return record.execution_id


# Task 1 ----------------------------------------------------------------------


@pytest.mark.task(1)
async def test_concurrent_writers_and_a_live_reader(stack: Stack) -> None:
    """six writers appending to one session while a reader follows it"""
    store = stack.runner.events
    session = unique("race")
    writers, per_writer = 6, 120
    executions = [await new_run(stack, session, f"w{w}") for w in range(writers)]

    async def write(execution_id: str) -> None:
        for start in range(0, per_writer, 5):
            await store.append(execution_id, tokens(start, 5))
            await asyncio.sleep(0)

    async def follow() -> list[int]:
        seen: list[int] = []
        async for event in store.follow_session("default", session, 0):
            seen.append(event.id)
            if len(seen) == writers * per_writer:
                break
        return seen

    reader = asyncio.create_task(follow())
    await asyncio.gather(*(write(e) for e in executions))
    try:
        seen = await asyncio.wait_for(reader, 15)
    except TimeoutError:
        seen = []
    expected = list(range(1, writers * per_writer + 1))
    check(
        seen == expected,
        called=f"{writers} writers appending {per_writer} events each to one session",
        got=f"the reader saw {len(seen)} events"
        + ("" if seen == sorted(set(seen)) else ", with gaps, repeats or out of order"),
        expected=f"ids 1 to {len(expected)}, each once, in order",
    )


# Task 2 ----------------------------------------------------------------------


@pytest.mark.task(2)
def test_new_events_skips_what_is_stored() -> None:
    """new_events(events, known) for repeated keys and a terminal event"""
    batch = tokens(0, 4)
    kept = [item.key for item in new_events(batch, {"t1"})]
    check(
        kept == ["t0", "t2", "t3"],
        called='new_events([t0, t1, t2, t3], known={"t1"})',
        got=kept,
        expected="['t0', 't2', 't3']",
    )
    twice = [item.key for item in new_events([*tokens(0, 2), *tokens(0, 2)], set())]
    check(
        twice == ["t0", "t1"],
        called="new_events([t0, t1, t0, t1], known=set())",
        got=twice,
        expected="each key once: ['t0', 't1']",
    )
    done = KeyedEvent("completed", Completed(answer="a", usage=Usage()))
    after = [
        item.key for item in new_events([*tokens(0, 1), done, *tokens(1, 2)], set())
    ]
    check(
        after == ["t0", "completed"],
        called="new_events([t0, completed, t1, t2], known=set())",
        got=after,
        expected="nothing after the terminal event: ['t0', 'completed']",
    )


@pytest.mark.task(2)
async def test_a_retried_step_stores_nothing_twice(stack: Stack) -> None:
    """the same events appended twice, then more after the run completed"""
    store = stack.runner.events
    execution_id = await new_run(stack, unique("again"), "r1")
    first = await store.append(execution_id, tokens(0, 5))
    second = await store.append(execution_id, tokens(0, 5))
    check(
        len(first) == 5 and second == [],
        called="append(the same 5 events) twice",
        got=f"{len(first)} stored, then {len(second)}",
        expected="5 stored, then none",
    )
    done = KeyedEvent("completed", Completed(answer="a", usage=Usage()))
    await store.append(execution_id, [done])
    late = await store.append(execution_id, tokens(5, 2))
    check(
        late == [],
        called="append(2 events) after the run's Completed event",
        got=f"{len(late)} stored",
        expected="none: nothing follows a terminal event",
    )


# Task 3 ----------------------------------------------------------------------


@pytest.mark.task(3)
async def test_replay_after_a_cursor(stack: Stack) -> None:
    """replay_session(tenant, session, after=N)"""
    store = stack.runner.events
    session = unique("replay")
    execution_id = await new_run(stack, session, "r1")
    stored = await store.append(execution_id, tokens(0, 30))
    cursor = stored[9].id
    page = await store.replay_session("default", session, cursor)
    ids = [event.id for event in page]
    check(
        ids == [event.id for event in stored[10:]],
        called=f"replay_session('default', session, after={cursor}) with ids "
        f"{stored[0].id}..{stored[-1].id}",
        got=f"ids {ids[:3]}...{ids[-2:]}" if len(ids) > 5 else f"ids {ids}",
        expected=f"ids {stored[10].id} to {stored[-1].id}, in order, once each",
    )
    limited = await store.replay_session("default", session, 0, limit=7)
    check(
        [event.id for event in limited] == [event.id for event in stored[:7]],
        called="replay_session('default', session, after=0, limit=7)",
        got=[event.id for event in limited],
        expected="the first 7 events",
    )


@pytest.mark.task(3)
async def test_reconnect_with_last_event_id(stack: Stack) -> None:
    """WS /ws/{sessionId}?lastEventId=N after 40 stored events"""
    store = stack.runner.events
    session = unique("socket")
    execution_id = await new_run(stack, session, "r1")
    stored = await store.append(execution_id, tokens(0, 40))
    cursor = stored[19].id
    received: list[int] = []
    url = f"{stack.ws_url}/ws/{session}?lastEventId={cursor}"
    async with websockets.connect(url) as socket:
        while True:
            try:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 1.5))
            except TimeoutError:
                break
            if frame["type"] == "event":
                received.append(frame["event"]["id"])
    check(
        received == [event.id for event in stored[20:]],
        called=f"WS /ws/{{sessionId}}?lastEventId={cursor}",
        got=f"{len(received)} events, first {received[:2]}",
        expected=f"the 20 events after {cursor}, in order, none repeated",
    )
