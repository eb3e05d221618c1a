"""Cancel ends a run: status cancelled, no model call after it, no event after it."""

import asyncio

import httpx
import httpx2
import openai
import pytest

from capstone.runtime import workflow
from tests.conftest import Stack
from tests.helpers import all_events, start_run, wait_final


async def assert_cancelled_cleanly(
    stack: Stack, client: httpx.AsyncClient, execution_id: str, message: str, calls: int
) -> None:
    await asyncio.sleep(1.5)
    view = (await client.get(f"/runs/{execution_id}")).json()
    assert view["status"] == "cancelled", view
    assert stack.offline_model.state.calls.count(match=message) == calls
    events = await all_events(client, execution_id)
    assert events[-1]["event"]["type"] == "cancelled"
    assert [e["event"]["type"] for e in events].count("cancelled") == 1


async def test_cancel_right_after_start(stack: Stack, session_id: str) -> None:
    message = f"cancel me {session_id}"
    stack.offline_model.state.faults.add("timeout", 1, message, 2.0)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        execution_id = await start_run(client, session_id, "c1", message)
        reply = await client.post(f"/runs/{execution_id}/cancel")
        assert reply.status_code == 200
        assert reply.json()["status"] == "cancelled"
        calls_at_cancel = stack.offline_model.state.calls.count(match=message)
        await assert_cancelled_cleanly(
            stack, client, execution_id, message, calls_at_cancel
        )


@pytest.fixture
def slow_backoff():  # type: ignore[no-untyped-def]
    runtime = workflow.current_runtime()
    original = runtime.settings
    runtime.settings = original.model_copy(update={"model_retry_seconds": 3.0})
    yield
    runtime.settings = original


async def test_cancel_during_retry_backoff(
    stack: Stack, session_id: str, slow_backoff: None
) -> None:
    message = f"always busy {session_id}"
    stack.offline_model.state.faults.add("rate_limit", 10, message)
    calls = stack.offline_model.state.calls
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        execution_id = await start_run(client, session_id, "c2", message)
        async with asyncio.timeout(10):
            while calls.count(match=message) < 1:
                await asyncio.sleep(0.02)
        # The first attempt got a 429; the step now sleeps 3 s before the next one.
        reply = await client.post(f"/runs/{execution_id}/cancel")
        assert reply.json()["status"] == "cancelled"
        await asyncio.sleep(2.5)
        await assert_cancelled_cleanly(stack, client, execution_id, message, 1)


async def test_cancel_after_completion_changes_nothing(
    stack: Stack, session_id: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        execution_id = await start_run(client, session_id, "done", "finish first")
        await wait_final(client, execution_id)
        reply = await client.post(f"/runs/{execution_id}/cancel")
        assert reply.json()["status"] == "completed"
        events = await all_events(client, execution_id)
    assert events[-1]["event"]["type"] == "completed"


async def test_retries_stop_at_the_budget(stack: Stack, session_id: str) -> None:
    message = f"never answers {session_id}"
    stack.offline_model.state.faults.add("error", 50, message)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        execution_id = await start_run(client, session_id, "f1", message)
        view = await wait_final(client, execution_id)
        events = await all_events(client, execution_id)
    budget = workflow.current_runtime().settings.model_max_attempts
    assert view["status"] == "failed"
    assert view["error"]["code"] == "model_unavailable"
    assert stack.offline_model.state.calls.count(match=message) == budget
    assert events[-1]["event"]["type"] == "failed"


def _status_error(status: int) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://model.invalid/v1/chat/completions")
    response = httpx2.Response(status, request=request)
    return openai.APIStatusError("refused", response=response, body=None)


def test_only_errors_a_later_attempt_can_fix_are_retried() -> None:
    assert workflow.is_retryable(_status_error(429))
    assert workflow.is_retryable(_status_error(503))
    assert not workflow.is_retryable(_status_error(400))
    assert not workflow.is_retryable(_status_error(401))
    assert not workflow.is_retryable(ValueError("a bug is not retried"))
