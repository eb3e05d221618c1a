"""Shared fixtures: a real Postgres, a runner and a gateway on loopback ports.

The database comes from the same place as the capstone's (``DATABASE_URL`` or the
embedded server); the tests use a database of their own, made fresh per session.
The runner runs in this process (DBOS is one per process), so tests can reach its
offline model to inject faults; the gateway is served by uvicorn on a free port and
every test talks to it with real HTTP and WebSocket clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from capstone import devdb
from capstone.gateway.app import GatewaySettings, create_app
from capstone.runtime import workflow
from capstone.runtime.runner import Runner, start_runner, stop_runner
from capstone.runtime.settings import RuntimeSettings

TEST_DATABASE = "agents_test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = devdb.with_database(devdb.database_url(), TEST_DATABASE)
    devdb.drop_database(url)
    devdb.ensure_database(url)
    yield url


@dataclass
class Stack:
    database_url: str
    base_url: str
    ws_url: str
    runner: Runner

    @property
    def offline_model(self):  # type: ignore[no-untyped-def]
        return workflow.current_runtime().offline_model


async def serve_in_task(
    app: object, port: int
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


@pytest.fixture(scope="session")
async def stack(database_url: str) -> AsyncIterator[Stack]:
    os.environ.pop("OPENAI_API_KEY", None)
    os.environ.pop("OPENAI_BASE_URL", None)
    settings = RuntimeSettings(
        database_url=database_url,
        RUNNER_ID="test-runner-0",
        model_retry_seconds=0.05,
        queue_poll_seconds=0.05,
        heartbeat_seconds=1.0,
    )
    runner = await start_runner(settings)
    port = free_port()
    app = create_app(GatewaySettings(DATABASE_URL=database_url, port=port))
    server, task = await serve_in_task(app, port)
    try:
        yield Stack(
            database_url, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", runner
        )
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await stop_runner(runner)


@pytest.fixture
def session_id() -> str:
    return "s-" + uuid.uuid4().hex[:12]
