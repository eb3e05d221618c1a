"""Runs of one session never overlap; runs of different sessions do."""

import asyncio
from datetime import datetime

import httpx

from tests.conftest import Stack
from tests.helpers import all_events, start_run, wait_final

SLOW_SECONDS = 0.6


def run_interval(events: list[dict]) -> tuple[datetime, datetime]:
    times = {e["event"]["type"]: datetime.fromisoformat(e["at"]) for e in events}
    return times["run_accepted"], times["completed"]


async def start_slow_runs(
    stack: Stack, client: httpx.AsyncClient, sessions: list[str], tag: str
) -> list[tuple[datetime, datetime]]:
    faults = stack.offline_model.state.faults
    for i in range(len(sessions)):
        # Each model call waits SLOW_SECONDS, then answers: long enough to overlap.
        faults.add("timeout", 1, f"{tag}-{i}", SLOW_SECONDS)
    executions = await asyncio.gather(
        *(
            start_run(client, s, f"run-{i}", f"{tag}-{i}")
            for i, s in enumerate(sessions)
        )
    )
    intervals = []
    for execution_id in executions:
        assert (await wait_final(client, execution_id))["status"] == "completed"
        intervals.append(run_interval(await all_events(client, execution_id)))
    return sorted(intervals)


async def test_runs_of_one_session_never_overlap(stack: Stack, session_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        intervals = await start_slow_runs(stack, client, [session_id] * 3, session_id)
    for (_, end), (next_start, _) in zip(intervals, intervals[1:], strict=False):
        assert next_start >= end, f"overlap: {intervals}"


async def test_runs_of_two_sessions_overlap(stack: Stack, session_id: str) -> None:
    sessions = [session_id + "-a", session_id + "-b"]
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        (start_a, end_a), (start_b, end_b) = await start_slow_runs(
            stack, client, sessions, session_id
        )
    assert start_b < end_a, "two sessions ran one after the other"


async def test_session_memory_is_in_postgres(stack: Stack, session_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        first = await start_run(client, session_id, "t1", "my name is Ada")
        await wait_final(client, first)
        second = await start_run(client, session_id, "t2", "what is my name")
        view = await wait_final(client, second)
    # The offline model numbers the user messages it was sent: the first turn's
    # message came back from the session_turns table.
    assert view["answer"].startswith("Reply 2:"), view["answer"]
