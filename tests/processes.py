"""The capstone as separate processes for the tests that kill or starve them:
the offline model on a loopback port, a gateway, and runners started on demand.
Each process logs to a file in the test's own folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: its process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@dataclass
class ProcessStack:
    env: dict[str, str]
    logs: Path
    model_url: str
    gateway_url: str
    runner_url: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / log_name, "ab")
        process = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=self.env, stdout=log, stderr=log
        )
        self.processes.append(process)
        return process

    def start_runner(self) -> subprocess.Popen[bytes]:
        """A runner with this stack's one runner id, ready to take work."""
        runner = self.spawn("-m", "capstone.runtime", log_name="runner.log")
        wait_http(self.runner_url + "/readyz", runner)
        return runner

    def runner_log(self) -> str:
        return (self.logs / "runner.log").read_text(errors="replace")[-3000:]


@contextmanager
def process_stack(
    logs: Path, database_url: str, runner_id: str, token_delay: float = 0.0
) -> Iterator[ProcessStack]:
    """Start the offline model and the gateway; runners are started by the test."""
    model_port, gateway_port, runner_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{model_port}/v1",
        "RUNNER_ID": runner_id,
        "RUNTIME_PORT": str(runner_port),
        "GATEWAY_PORT": str(gateway_port),
        "QUEUE_POLL_SECONDS": "0.1",
        "HEARTBEAT_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("OPENAI_API_KEY", None)
    stack = ProcessStack(
        env,
        logs,
        model_url=f"http://127.0.0.1:{model_port}",
        gateway_url=f"http://127.0.0.1:{gateway_port}",
        runner_url=f"http://127.0.0.1:{runner_port}",
    )
    try:
        model = stack.spawn(
            "-m",
            "capstone.model.offline",
            "--port",
            str(model_port),
            "--token-delay",
            str(token_delay),
            log_name="model.log",
        )
        wait_http(stack.model_url + "/v1/models", model)
        gateway = stack.spawn("-m", "capstone.gateway", log_name="gateway.log")
        wait_http(stack.gateway_url + "/healthz", gateway)
        yield stack
    finally:
        for process in stack.processes:
            if process.poll() is None:
                process.terminate()
        for process in stack.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
