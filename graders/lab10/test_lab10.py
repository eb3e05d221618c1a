"""Lab 10: session entities.

Each check runs the reference capstone with one task's function taken from the
learner's files (see graders/conftest.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from capstone import sessions
from capstone.gateway import runs
from capstone.runtime import runner as runner_module
from capstone.runtime import workflow
from capstone.testing import Stack
from course.check import check

# The reference, kept before any swap: a test that re-registers the queue with
# the learner's code puts the reference configuration back afterwards.
REFERENCE_REGISTER_QUEUES = runner_module.register_queues
SLOW_SECONDS = 0.6


def unique(label: str) -> str:
    return f"{label}-{time.monotonic_ns()}"


async def run_intervals(
    stack: Stack, sessions_and_messages: list[tuple[str, str]]
) -> list[tuple[datetime, datetime]]:
    """Start slow runs at once; return each run's [accepted, completed] times."""
    for _, message in sessions_and_messages:
        stack.offline_model.state.faults.add("timeout", 1, message, SLOW_SECONDS)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        replies = await asyncio.gather(
            *(
                client.post(
                    f"/agents/{session}/runs",
                    json={"runId": f"r{i}", "message": message},
                )
                for i, (session, message) in enumerate(sessions_and_messages)
            )
        )
        intervals = []
        for reply in replies:
            execution_id = reply.json()["executionId"]
            events: list[dict[str, Any]] = []
            async with asyncio.timeout(30):
                while not any(
                    e["event"]["type"] in ("completed", "failed") for e in events
                ):
                    await asyncio.sleep(0.05)
                    page = await client.get(
                        f"/runs/{execution_id}/events", params={"after": 0}
                    )
                    events = page.json()["events"]
            times = {
                e["event"]["type"]: datetime.fromisoformat(e["at"]) for e in events
            }
            intervals.append(
                (times["run_accepted"], times.get("completed", times.get("failed")))
            )
    return sorted(intervals)


# Task 1 ----------------------------------------------------------------------


@pytest.mark.task(1)
def test_one_key_per_session() -> None:
    """partition_key(tenant, session) for runs of one session and of others"""
    key = runs.partition_key("acme", "s1")
    check(
        key == runs.partition_key("acme", "s1") and isinstance(key, str) and key,
        called='partition_key("acme", "s1") twice',
        got=f"{key!r}, then {runs.partition_key('acme', 's1')!r}",
        expected="the same non-empty key both times",
    )
    others = {runs.partition_key("acme", "s2"), runs.partition_key("globex", "s1")}
    check(
        key not in others and len(others) == 2,
        called='partition_key for ("acme", "s2") and ("globex", "s1")',
        got=f"keys {sorted(others)} next to {key!r}",
        expected="a key of its own for every session of every tenant",
    )


@pytest.mark.task(1)
async def test_two_sessions_run_side_by_side(stack: Stack) -> None:
    """two sessions, one slow run each, started at once"""
    (start_a, end_a), (start_b, _) = await run_intervals(
        stack, [(unique("a"), unique("slow a")), (unique("b"), unique("slow b"))]
    )
    check(
        start_b < end_a,
        called="a slow run in each of two sessions, started at once",
        got="the second session waited for the first",
        expected="the two runs overlap",
    )


# Task 2 ----------------------------------------------------------------------


@pytest.fixture
async def learner_queue(stack: Stack) -> AsyncIterator[None]:
    settings = workflow.current_runtime().settings
    await runner_module.register_queues(settings)
    yield
    await REFERENCE_REGISTER_QUEUES(settings)


@pytest.mark.task(2)
async def test_runs_of_one_session_never_overlap(
    stack: Stack, learner_queue: None
) -> None:
    """three slow runs in one session, started at once"""
    session = unique("one")
    intervals = await run_intervals(
        stack, [(session, unique(f"slow {i}")) for i in range(3)]
    )
    overlaps = sum(
        next_start < end
        for (_, end), (next_start, _) in zip(intervals, intervals[1:], strict=False)
    )
    check(
        overlaps == 0,
        called="three slow runs in one session, started at once",
        got=f"{overlaps} pair(s) of runs overlapping",
        expected="each run to start after the one before it finished",
    )


@pytest.mark.task(2)
async def test_other_sessions_still_run_in_parallel(
    stack: Stack, learner_queue: None
) -> None:
    """one slow run in each of two sessions, with your queue"""
    (start_a, end_a), (start_b, _) = await run_intervals(
        stack, [(unique("c"), unique("slow c")), (unique("d"), unique("slow d"))]
    )
    check(
        start_b < end_a,
        called="a slow run in each of two sessions, with your queue",
        got="the second session waited for the first",
        expected="the two runs overlap: the limit is per session, not for the queue",
    )


# Task 3 ----------------------------------------------------------------------


async def record_turns(stack: Stack, tenant: str, session: str, turns: int) -> None:
    for i in range(turns):
        record, _ = await sessions.create_run(
            stack.runner.pool, tenant, session, f"t{i}", f"question {i}"
        )
        await sessions.save_turn(
            stack.runner.pool, record, f"question {i}", f"answer {i}"
        )


@pytest.mark.task(3)
async def test_history_comes_back_in_order(stack: Stack) -> None:
    """load_history(pool, tenant, session) after three turns"""
    session = unique("memory")
    await record_turns(stack, "acme", session, 3)
    await record_turns(stack, "globex", session, 2)
    history = await sessions.load_history(stack.runner.pool, "acme", session)
    asked = [turn.user_message for turn in history]
    check(
        asked == ["question 0", "question 1", "question 2"],
        called=f'load_history(pool, "acme", "{session}") after three turns',
        got=asked,
        expected="the tenant's three questions, oldest first",
    )
    last_two = await sessions.load_history(stack.runner.pool, "acme", session, limit=2)
    check(
        [turn.user_message for turn in last_two] == ["question 1", "question 2"],
        called="load_history(..., limit=2)",
        got=[turn.user_message for turn in last_two],
        expected="the two latest turns, oldest first",
    )


@pytest.mark.task(3)
async def test_memory_survives_a_lost_cache(stack: Stack) -> None:
    """two turns of one session through the gateway"""
    session = unique("remember")
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for run_id, message in (("t1", "my name is Ada"), ("t2", "what is my name")):
            reply = await client.post(
                f"/agents/{session}/runs", json={"runId": run_id, "message": message}
            )
            execution_id = reply.json()["executionId"]
            async with asyncio.timeout(20):
                while True:
                    view = (await client.get(f"/runs/{execution_id}")).json()
                    if view["status"] in ("completed", "failed"):
                        break
                    await asyncio.sleep(0.05)
    check(
        (view.get("answer") or "").startswith("Reply 2:"),
        called="a second question in the same session",
        got=view.get("answer") or view.get("error"),
        expected="an answer built from both turns (the offline model says 'Reply 2')",
    )
