"""Test harnesses: a real Postgres, a runner and a gateway, in this process or not.

    async with running_stack("agents_test") as stack:
        ...  # stack.base_url, stack.ws_url, stack.runner, stack.offline_model

The database comes from where the capstone's does (``DATABASE_URL`` or the embedded
server) and is made fresh each time. The runner runs in this process, on this
event loop, so a test can reach its offline model to inject faults; the gateway is
served by uvicorn on a free loopback port for real HTTP and WebSocket clients.
Retries, queue polling and heartbeats are short, so a workflow test takes a second
or two, not a minute.

``process_stack`` runs the parts as separate processes instead, for tests that kill
a runner or take the database away: the offline model on a loopback port, the
gateway, and runners the test starts itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from capstone import devdb
from capstone.gateway.app import GatewaySettings, create_app
from capstone.local import free_port
from capstone.runtime import workflow
from capstone.runtime.assembly import running_runner
from capstone.runtime.runner import Runner
from capstone.runtime.settings import RuntimeSettings

REPO = Path(__file__).resolve().parent.parent

FAST_SETTINGS: dict[str, Any] = {
    "model_retry_seconds": 0.05,
    "queue_poll_seconds": 0.05,
    "heartbeat_seconds": 1.0,
}


@dataclass
class Stack:
    database_url: str
    base_url: str
    ws_url: str
    runner: Runner

    @property
    def offline_model(self) -> FastAPI:
        model = workflow.current_runtime().offline_model
        assert model is not None, "the stack runs with a real model provider"
        return model


def fresh_database(name: str) -> str:
    """The URL of an empty database ``name`` on the capstone's server: whatever an
    earlier run left there is dropped first, so every test session starts clean."""
    # lab 5.3 begin
    url = devdb.with_database(devdb.database_url(), name)
    devdb.drop_database(url)
    devdb.ensure_database(url)
    return url
    # lab 5.3 end


async def serve_in_task(
    app: Any, port: int
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", ws_max_size=65536
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return server, task


@contextlib.asynccontextmanager
async def running_stack(
    database_name: str, runner_id: str = "test-runner-0", **settings: Any
) -> AsyncIterator[Stack]:
    """A fresh database, an in-process runner and a gateway on a loopback port."""
    # The offline model, in process: a test must never reach a real provider.
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        os.environ.pop(name, None)
    database_url = await asyncio.to_thread(fresh_database, database_name)
    runtime_settings = RuntimeSettings(
        database_url=database_url,
        RUNNER_ID=runner_id,
        **{**FAST_SETTINGS, **settings},
    )
    async with running_runner(runtime_settings) as runner:
        port = free_port()
        app = create_app(GatewaySettings(DATABASE_URL=database_url, port=port))
        server, task = await serve_in_task(app, port)
        try:
            yield Stack(
                database_url,
                f"http://127.0.0.1:{port}",
                f"ws://127.0.0.1:{port}",
                runner,
            )
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)


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

    def start_runner(self, *command: str) -> subprocess.Popen[bytes]:
        """A runner with this stack's one runner id, ready to take work.

        ``command`` replaces ``-m capstone.runtime``, for a runner started
        through a wrapper (a grader swapping in a learner's code, say).
        """
        args = command or ("-m", "capstone.runtime")
        runner = self.spawn(*args, log_name="runner.log")
        wait_http(self.runner_url + "/readyz", runner)
        return runner

    def runner_log(self) -> str:
        return (self.logs / "runner.log").read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def process_stack(
    logs: Path,
    database_url: str,
    runner_id: str,
    token_delay: float = 0.0,
    runner_command: tuple[str, ...] = (),
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
            *("-m", "capstone.model.offline", "--port", str(model_port)),
            *("--token-delay", str(token_delay)),
            log_name="model.log",
        )
        gateway = stack.spawn("-m", "capstone.gateway", log_name="gateway.log")
        if runner_command:
            # Started alongside the others, not after them; the test waits for it.
            stack.spawn(*runner_command, log_name="runner.log")
        wait_http(stack.model_url + "/v1/models", model)
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
