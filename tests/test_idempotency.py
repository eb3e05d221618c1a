"""The same runId always means the same execution, once."""

import asyncio
from collections import Counter

import httpx
import pytest

from capstone.runtime.runner import RunnerAlreadyRunning, claim_runner_id
from tests.conftest import Stack
from tests.helpers import all_events, start_run, wait_final


async def test_twenty_concurrent_starts_make_one_execution(
    stack: Stack, session_id: str
) -> None:
    message = f"hello from {session_id}"
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        replies = await asyncio.gather(
            *(
                client.post(
                    f"/agents/{session_id}/runs",
                    json={"runId": "same", "message": message},
                )
                for _ in range(20)
            )
        )
        assert [r.status_code for r in replies] == [202] * 20
        execution_ids = {r.json()["executionId"] for r in replies}
        assert len(execution_ids) == 1, execution_ids
        execution_id = execution_ids.pop()

        view = await wait_final(client, execution_id)
        assert view["status"] == "completed"
        await asyncio.sleep(0.3)
        events = await all_events(client, execution_id)

    counts = Counter(e["event"]["type"] for e in events)
    assert counts["run_accepted"] == 1
    assert counts["completed"] == 1
    tokens = [e["event"]["index"] for e in events if e["event"]["type"] == "token"]
    assert tokens == list(range(len(tokens))) and tokens
    assert stack.offline_model.state.calls.count(match=message) == 1


async def test_repeat_after_completion_returns_the_same_run(
    stack: Stack, session_id: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        first = await start_run(client, session_id, "again", "say it once")
        await wait_final(client, first)
        second = await start_run(client, session_id, "again", "say it once")
        assert second == first
        await asyncio.sleep(0.3)
        events = await all_events(client, first)
    assert [e["event"]["type"] for e in events].count("run_accepted") == 1
    assert stack.offline_model.state.calls.count(match="say it once") == 1


async def test_same_run_id_with_another_message_is_refused(
    stack: Stack, session_id: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        await start_run(client, session_id, "r1", "first message")
        reply = await client.post(
            f"/agents/{session_id}/runs",
            json={"runId": "r1", "message": "second message"},
        )
    assert reply.status_code == 409
    assert reply.json()["error"]["code"] == "run_id_reused"


async def test_same_run_id_in_two_sessions_is_two_runs(
    stack: Stack, session_id: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        a = await start_run(client, session_id + "-a", "r1", "hi")
        b = await start_run(client, session_id + "-b", "r1", "hi")
    assert a != b


async def test_a_runner_id_belongs_to_one_live_process(stack: Stack) -> None:
    with pytest.raises(RunnerAlreadyRunning, match="test-runner-0"):
        await claim_runner_id(stack.database_url, "test-runner-0", wait_seconds=0.3)
    other = await claim_runner_id(stack.database_url, "test-runner-9", wait_seconds=0.3)
    await other.close()
