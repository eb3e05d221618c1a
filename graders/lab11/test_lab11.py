"""Lab 11: durable workflows.

Each check runs the reference capstone with one task's function taken from the
learner's files (see graders/conftest.py).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
import pytest

from capstone import devdb
from capstone.domain import ids
from capstone.runtime import runner as runner_module
from capstone.runtime import workflow
from capstone.runtime.settings import APPLICATION_VERSION, RuntimeSettings
from capstone.testing import ProcessStack, Stack, process_stack, wait_http
from course.check import check

FINAL = ("completed", "failed", "cancelled")


async def start(
    client: httpx.AsyncClient, session: str, run_id: str, message: str
) -> Any:
    return await client.post(
        f"/agents/{session}/runs", json={"runId": run_id, "message": message}
    )


async def wait_final(client: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            view = (await client.get(f"/runs/{execution_id}")).json()
            if view.get("status") in FINAL:
                return dict(view)
            await asyncio.sleep(0.05)


async def events_of(client: httpx.AsyncClient, execution_id: str) -> list[str]:
    page = (
        await client.get(f"/runs/{execution_id}/events", params={"after": 0})
    ).json()
    return [e["event"]["type"] for e in page.get("events", [])]


def unique(label: str) -> str:
    return f"{label}-{time.monotonic_ns()}"


# Task 1 ----------------------------------------------------------------------


@pytest.mark.task(1)
def test_execution_id_is_a_function_of_the_request() -> None:
    """execution_id_for("acme", "s1", "r1"), twice, and for other requests"""
    first = ids.execution_id_for("acme", "s1", "r1")
    again = ids.execution_id_for("acme", "s1", "r1")
    check(
        first == again,
        called='execution_id_for("acme", "s1", "r1") twice',
        got=f"{first!r}, then {again!r}",
        expected="the same id both times",
    )
    others = {
        ids.execution_id_for("acme", "s2", "r1"),
        ids.execution_id_for("acme", "s1", "r2"),
        ids.execution_id_for("globex", "s1", "r1"),
    }
    check(
        first not in others and len(others) == 3,
        called="execution_id_for with another tenant, session or runId",
        got="an id equal to another request's",
        expected="a different id whenever the tenant, session or runId differs",
    )
    check(
        isinstance(first, str) and ids.is_valid_id(first, 128),
        called='execution_id_for("acme", "s1", "r1")',
        got=first,
        expected="letters, digits, '_', '-' or '.', at most 128 characters",
    )


@pytest.mark.task(1)
async def test_twenty_concurrent_starts_make_one_execution(stack: Stack) -> None:
    """POST /agents/{sessionId}/runs 20 times at once with one runId"""
    session, message = unique("idem"), unique("hello")
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        replies = await asyncio.gather(
            *(start(client, session, "same", message) for _ in range(20))
        )
        statuses = sorted({r.status_code for r in replies})
        check(
            statuses == [202],
            called=f"POST /agents/{session}/runs 20 times at once, one runId",
            got=f"HTTP {statuses}",
            expected="202 for every request",
        )
        execution_ids = {r.json()["executionId"] for r in replies}
        check(
            len(execution_ids) == 1,
            called="20 concurrent starts with one runId",
            got=f"{len(execution_ids)} different executionIds",
            expected="one executionId in every reply",
        )
        execution_id = execution_ids.pop()
        await wait_final(client, execution_id)
        await asyncio.sleep(0.3)
        kinds = await events_of(client, execution_id)
    calls = stack.offline_model.state.calls.count(match=message)
    check(
        kinds.count("run_accepted") == 1 and calls == 1,
        called="20 concurrent starts with one runId",
        got=f"{kinds.count('run_accepted')} run(s) accepted, {calls} model call(s)",
        expected="one run and one model call",
    )


# Task 2 ----------------------------------------------------------------------


@pytest.mark.task(2)
def test_retry_budget_comes_from_the_settings() -> None:
    """model_step_options(settings)"""
    for attempts in (3, 6):
        settings = RuntimeSettings(model_max_attempts=attempts, model_retry_seconds=0.5)
        options = workflow.model_step_options(settings)
        check(
            options.get("retries_allowed") is True
            and options.get("max_attempts") == attempts,
            called=f"model_step_options(settings with model_max_attempts={attempts})",
            got={k: options.get(k) for k in ("retries_allowed", "max_attempts")},
            expected=f"retries allowed, at most {attempts} attempts",
        )
        check(
            options.get("interval_seconds") == 0.5
            and (options.get("backoff_rate") or 0) >= 1,
            called="model_step_options(settings with model_retry_seconds=0.5)",
            got={k: options.get(k) for k in ("interval_seconds", "backoff_rate")},
            expected="the first wait from the settings, growing (backoff of 1 or more)",
        )
        check(
            options.get("should_retry") is workflow.is_retryable,
            called="model_step_options(settings)",
            got=f"should_retry={options.get('should_retry')!r}",
            expected="should_retry set to is_retryable, so a 400 is not retried",
        )


@pytest.mark.task(2)
async def test_retries_stop_at_the_bound(stack: Stack) -> None:
    """a run whose model answers 500 every time"""
    message = unique("never answers")
    stack.offline_model.state.faults.add("error", 50, message)
    budget = workflow.current_runtime().settings.model_max_attempts
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        reply = await start(client, unique("bound"), "r1", message)
        view = await wait_final(client, reply.json()["executionId"])
    calls = stack.offline_model.state.calls.count(match=message)
    check(
        view["status"] == "failed" and calls == budget,
        called=f"a run whose model always answers 500 (budget: {budget} attempts)",
        got=f"status {view['status']!r} after {calls} model call(s)",
        expected=f"status 'failed' after exactly {budget} calls",
    )


# Task 3 ----------------------------------------------------------------------


def _status_error(status: int) -> openai.APIStatusError:
    request = httpx2.Request("POST", "http://model.invalid/v1/chat/completions")
    return openai.APIStatusError(
        "refused", response=httpx2.Response(status, request=request), body=None
    )


@pytest.mark.task(3)
def test_only_errors_a_later_attempt_can_fix_are_retried() -> None:
    """is_retryable(error) for provider errors, timeouts and a bug"""
    request = httpx2.Request("POST", "http://model.invalid/v1/chat/completions")
    cases: list[tuple[str, BaseException, bool]] = [
        ("429 Too Many Requests", _status_error(429), True),
        ("500 Internal Server Error", _status_error(500), True),
        ("503 Service Unavailable", _status_error(503), True),
        ("a timeout", openai.APITimeoutError(request=request), True),
        ("a lost connection", openai.APIConnectionError(request=request), True),
        ("400 Bad Request", _status_error(400), False),
        ("401 Unauthorized", _status_error(401), False),
        ("404 Not Found", _status_error(404), False),
        ("a ValueError (a bug)", ValueError("bug"), False),
    ]
    for label, error, expected in cases:
        answer = workflow.is_retryable(error)
        check(
            answer is expected,
            called=f"is_retryable({label})",
            got=repr(answer),
            expected=repr(expected),
        )


# Task 4 ----------------------------------------------------------------------


@pytest.fixture
def slow_backoff() -> Iterator[None]:
    runtime = workflow.current_runtime()
    original = runtime.settings
    runtime.settings = original.model_copy(update={"model_retry_seconds": 1.2})
    yield
    runtime.settings = original


@pytest.mark.task(4)
async def test_no_model_call_after_a_cancel(stack: Stack, slow_backoff: None) -> None:
    """a cancel while the model step waits to retry a 429"""
    message = unique("always busy")
    stack.offline_model.state.faults.add("rate_limit", 10, message)
    calls = stack.offline_model.state.calls
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        reply = await start(client, unique("cancel"), "r1", message)
        execution_id = reply.json()["executionId"]
        deadline = time.monotonic() + 10
        while calls.count(match=message) < 1:
            view = (await client.get(f"/runs/{execution_id}")).json()
            check(
                view.get("status") not in FINAL and time.monotonic() < deadline,
                called="a run whose model answers 429",
                got=f"status {view.get('status')!r} before any model call",
                expected="a model call, then a wait before the retry",
            )
            await asyncio.sleep(0.02)
        # The first attempt got a 429; the step now waits 1.2 s before the next.
        await client.post(f"/runs/{execution_id}/cancel")
        await asyncio.sleep(2.0)
        view = (await client.get(f"/runs/{execution_id}")).json()
        kinds = await events_of(client, execution_id)
    made = calls.count(match=message)
    check(
        made == 1,
        called="POST /runs/{id}/cancel while the model step waits to retry a 429",
        got=f"{made} model calls",
        expected="no model call after the cancel (1 in all)",
    )
    check(
        view["status"] == "cancelled" and kinds[-1:] == ["cancelled"],
        called="GET /runs/{id} after the cancel",
        got=f"status {view['status']!r}, last event {kinds[-1:]}",
        expected="status 'cancelled', and nothing stored after the Cancelled event",
    )


# Task 5 ----------------------------------------------------------------------


@pytest.mark.task(5)
def test_runner_identity_is_stable() -> None:
    """dbos_config(settings, database_url)"""
    for runner_id in ("agents-runtime-0", "agents-runtime-1"):
        settings = RuntimeSettings(RUNNER_ID=runner_id)
        first = runner_module.dbos_config(settings, "postgresql://db/agents")
        again = runner_module.dbos_config(settings, "postgresql://db/agents")
        check(
            first.get("executor_id") == runner_id == again.get("executor_id"),
            called=f"dbos_config(settings with runner id {runner_id!r}) twice",
            got=f"executor_id {first.get('executor_id')!r}, "
            f"then {again.get('executor_id')!r}",
            expected=f"executor_id {runner_id!r} both times",
        )
        check(
            first.get("application_version") == APPLICATION_VERSION
            and first.get("system_database_url") == "postgresql://db/agents",
            called="dbos_config(settings, 'postgresql://db/agents')",
            got={
                k: first.get(k) for k in ("application_version", "system_database_url")
            },
            expected="the pinned APPLICATION_VERSION and the database URL given",
        )


def learner_runner(lab_dir: Path) -> tuple[str, ...]:
    """A runner process with the learner's Task 5 function swapped in."""
    return ("-m", "course.swap", "11", str(lab_dir), "5", "-m", "capstone.runtime")


@pytest.fixture
def crash_stack(tmp_path: Path, lab_dir: Path) -> Iterator[ProcessStack]:
    url = devdb.with_database(devdb.database_url(), "agents_lab11_crash")
    devdb.drop_database(url)
    devdb.ensure_database(url)
    with process_stack(
        tmp_path, url, "lab11-crash-0", runner_command=learner_runner(lab_dir)
    ) as processes:
        yield processes


@pytest.mark.task(5)
def test_a_killed_runner_resumes_its_run(
    crash_stack: ProcessStack, lab_dir: Path
) -> None:
    """SIGKILL a runner mid-run and start it again with the same id"""
    model = httpx.Client(base_url=crash_stack.model_url)
    gateway = httpx.Client(base_url=crash_stack.gateway_url)
    # Both model calls answer after 0.6 s: time to kill the runner during the second.
    model.post(
        "/_offline/faults",
        json={"kind": "timeout", "times": 2, "match": "6 * 7", "delay_seconds": 0.6},
    )
    runner = crash_stack.processes[-1]
    wait_http(crash_stack.runner_url + "/readyz", runner)
    execution_id = gateway.post(
        "/agents/crash/runs", json={"runId": "r1", "message": "What is 6 * 7?"}
    ).json()["executionId"]

    deadline = time.monotonic() + 20
    while len(model.get("/_offline/calls").json()) < 2:
        if time.monotonic() > deadline:
            pytest.fail("the run never reached its second model call")
        time.sleep(0.02)
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)

    crash_stack.start_runner(*learner_runner(lab_dir))
    deadline = time.monotonic() + 15
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = gateway.get(f"/runs/{execution_id}").json()
        if view.get("status") in FINAL:
            break
        time.sleep(0.1)
    calls = len(model.get("/_offline/calls").json())
    check(
        view.get("status") == "completed",
        called="SIGKILL the runner mid-run, then start it again with the same id",
        got=f"status {view.get('status')!r} 15 s after the restart",
        expected="the restarted runner resumes the run and completes it",
        hint="DBOS resumes only the workflows of its own executor id and version",
    )
    check(
        calls == 3,
        called="the run's model calls across the crash",
        got=f"{calls} calls",
        expected="3: the first step once, the interrupted one twice",
    )
