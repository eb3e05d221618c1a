"""A runner killed with SIGKILL mid-run, restarted with the same id: the run
completes, and the steps that had finished are not run again.

Everything here is a separate process, as in production: the gateway, the runner,
and the offline model served on a loopback port, which the runner reaches through
``OPENAI_BASE_URL`` with the real network client.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from capstone import devdb
from capstone.testing import ProcessStack, process_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ProcessStack]:
    url = devdb.with_database(devdb.database_url(), "agents_test_crash")
    devdb.drop_database(url)
    devdb.ensure_database(url)
    with process_stack(tmp_path, url, "crash-runner-0") as processes:
        processes.env["MODEL_RETRY_SECONDS"] = "0.1"
        yield processes
    devdb.drop_database(url)


def wait_for_status(
    gateway: httpx.Client, execution_id: str, timeout: float = 30
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = gateway.get(f"/runs/{execution_id}").json()
        if view["status"] in ("completed", "failed", "cancelled"):
            return dict(view)
        time.sleep(0.1)
    return dict(view)


def test_killed_runner_resumes_without_redoing_finished_steps(
    stack: ProcessStack,
) -> None:
    model = httpx.Client(base_url=stack.model_url)
    gateway = httpx.Client(base_url=stack.gateway_url)
    # Both model calls of the run answer after 2 s: time to kill the runner while
    # the second one is in flight.
    model.post(
        "/_offline/faults",
        json={"kind": "timeout", "times": 2, "match": "6 * 7", "delay_seconds": 2},
    )

    runner = stack.start_runner()
    execution_id = gateway.post(
        "/agents/crash/runs", json={"runId": "r1", "message": "What is 6 * 7?"}
    ).json()["executionId"]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = gateway.get(f"/runs/{execution_id}/events", params={"after": 0}).json()
        if any(e["event"]["type"] == "tool_result" for e in page["events"]):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the tool step never finished")
    # Kill as soon as the second model call is in flight (it takes 2 s).
    deadline = time.monotonic() + 10
    while len(model.get("/_offline/calls").json()) < 2:
        assert time.monotonic() < deadline, "the second model call never started"
        time.sleep(0.02)
    runner.send_signal(signal.SIGKILL)
    runner.wait(10)
    assert gateway.get(f"/runs/{execution_id}").json()["status"] == "running"

    # The killed runner's id is free again at once: its lock went with its
    # connection. The new process recovers the workflow under that id.
    stack.start_runner()
    view = wait_for_status(gateway, execution_id)
    assert view["status"] == "completed", (view, stack.runner_log())
    assert "42" in view["answer"]

    # Calls: the first model step once, the second twice (killed, then redone).
    calls = model.get("/_offline/calls").json()
    assert len(calls) == 3, calls
    events = gateway.get(f"/runs/{execution_id}/events", params={"after": 0}).json()[
        "events"
    ]
    types = [e["event"]["type"] for e in events]
    assert types.count("run_accepted") == 1
    assert types.count("tool_call") == 1 and types.count("tool_result") == 1
    assert types.count("completed") == 1 and types[-1] == "completed"
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})
