"""A runner killed with SIGKILL mid-run, restarted with the same id: the run
completes, and the steps that had finished are not run again.

Everything here is a separate process, as in production: the gateway, the runner,
and the offline model served on a loopback port, which the runner reaches through
``OPENAI_BASE_URL`` with the real network client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from capstone import devdb
from tests.conftest import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spawn(
    module: str, env: dict[str, str], log_name: str, tmp_path: Path
) -> subprocess.Popen[bytes]:
    log = open(tmp_path / log_name, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", module], cwd=REPO, env=env, stdout=log, stderr=log
    )


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@dataclass
class CrashEnv:
    env: dict[str, str]
    model_url: str
    gateway_url: str
    runner_url: str


@pytest.fixture
def crash_env(tmp_path: Path) -> Iterator[CrashEnv]:
    url = devdb.with_database(devdb.database_url(), "agents_test_crash")
    devdb.drop_database(url)
    devdb.ensure_database(url)
    processes: list[subprocess.Popen[bytes]] = []
    model_port, gateway_port, runner_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{model_port}/v1",
        "RUNNER_ID": "crash-runner-0",
        "RUNTIME_PORT": str(runner_port),
        "GATEWAY_PORT": str(gateway_port),
        "MODEL_RETRY_SECONDS": "0.1",
        "QUEUE_POLL_SECONDS": "0.1",
        "HEARTBEAT_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("OPENAI_API_KEY", None)
    model = subprocess.Popen(
        [sys.executable, "-m", "capstone.model.offline", "--port", str(model_port)],
        cwd=REPO,
        env=env,
        stdout=open(tmp_path / "model.log", "ab"),
        stderr=subprocess.STDOUT,
    )
    processes.append(model)
    wait_http(f"http://127.0.0.1:{model_port}/v1/models", model)
    gateway = spawn("capstone.gateway", env, "gateway.log", tmp_path)
    processes.append(gateway)
    wait_http(f"http://127.0.0.1:{gateway_port}/healthz", gateway)
    yield CrashEnv(
        env=env,
        model_url=f"http://127.0.0.1:{model_port}",
        gateway_url=f"http://127.0.0.1:{gateway_port}",
        runner_url=f"http://127.0.0.1:{runner_port}",
    )
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    devdb.drop_database(url)


def test_killed_runner_resumes_without_redoing_finished_steps(
    crash_env: CrashEnv, tmp_path: Path
) -> None:
    env = crash_env.env
    message = "What is 6 * 7?"
    model = httpx.Client(base_url=crash_env.model_url)
    gateway = httpx.Client(base_url=crash_env.gateway_url)
    # Both model calls of the run answer after 2 s: time to kill the runner while
    # the second one is in flight.
    model.post(
        "/_offline/faults",
        json={"kind": "timeout", "times": 2, "match": "6 * 7", "delay_seconds": 2},
    )

    runner = spawn("capstone.runtime", env, "runner.log", tmp_path)
    try:
        wait_http(crash_env.runner_url + "/readyz", runner)
        execution_id = gateway.post(
            "/agents/crash/runs", json={"runId": "r1", "message": message}
        ).json()["executionId"]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page = gateway.get(
                f"/runs/{execution_id}/events", params={"after": 0}
            ).json()
            if any(e["event"]["type"] == "tool_result" for e in page["events"]):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the tool step never finished")
        time.sleep(0.5)
        assert len(model.get("/_offline/calls").json()) == 2
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        assert gateway.get(f"/runs/{execution_id}").json()["status"] == "running"
    finally:
        if runner.poll() is None:
            runner.kill()

    restarted = spawn("capstone.runtime", env, "runner.log", tmp_path)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            view = gateway.get(f"/runs/{execution_id}").json()
            if view["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.1)
        assert view["status"] == "completed", (
            view,
            (tmp_path / "runner.log").read_text()[-3000:],
        )
        assert "42" in view["answer"]
    finally:
        restarted.terminate()
        restarted.wait(15)

    # The killed runner's id was free again at once: its lock went with its
    # connection. Calls: the first model step once, the second twice.
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
