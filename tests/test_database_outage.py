"""Postgres goes away for a few seconds in the middle of a run.

The gateway answers 503 while it is gone, a WebSocket reader carries on from its
cursor when it is back, and the run completes with every event once. Everything
runs against a Postgres of this test's own, so stopping it touches nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from capstone.testing import REPO, ProcessStack, process_stack, wait_http


def devdb(data_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "capstone.devdb", *args],
        cwd=REPO,
        env={**os.environ, "CAPSTONE_DATA_DIR": str(data_dir), "DATABASE_URL": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[ProcessStack, Path]]:
    tmp_path.chmod(0o755)
    data_dir = tmp_path / "data"
    url = devdb(data_dir, "url", "agents")
    try:
        with process_stack(tmp_path, url, "outage-runner-0", token_delay=0.03) as stack:
            stack.start_runner()
            wait_http(stack.gateway_url + "/readyz", stack.processes[1])
            yield stack, data_dir
    finally:
        devdb(data_dir, "stop")


async def test_a_run_rides_out_a_database_outage(
    stack: tuple[ProcessStack, Path],
) -> None:
    processes, data_dir = stack
    ws_url = processes.gateway_url.replace("http://", "ws://") + "/ws/outage"
    events: list[dict] = []
    async with (
        httpx.AsyncClient(base_url=processes.gateway_url, timeout=10) as client,
        websockets.connect(ws_url) as socket,
    ):
        await socket.send(
            json.dumps({"type": "ask", "runId": "o1", "message": "count to 150"})
        )
        accepted = json.loads(await socket.recv())
        execution_id = accepted["executionId"]

        async def read_until_completed() -> None:
            while True:
                frame = json.loads(await socket.recv())
                assert frame["type"] == "event", frame
                events.append(frame["event"])
                if frame["event"]["event"]["type"] == "completed":
                    return

        reader = asyncio.create_task(read_until_completed())
        async with asyncio.timeout(15):
            while sum(e["event"]["type"] == "token" for e in events) < 20:
                await asyncio.sleep(0.02)

        await asyncio.to_thread(devdb, data_dir, "stop")
        during = await client.get(f"/runs/{execution_id}")
        assert during.status_code == 503, during.text
        assert during.json()["error"]["code"] == "unavailable"
        async with websockets.connect(ws_url + "-other") as other:
            await other.send(
                json.dumps({"type": "ask", "runId": "o2", "message": "hi"})
            )
            refused = json.loads(await asyncio.wait_for(other.recv(), 10))
        assert refused["type"] == "error", refused
        assert refused["error"]["code"] == "unavailable"
        await asyncio.sleep(2)
        await asyncio.to_thread(devdb, data_dir, "url", "agents")

        try:
            await asyncio.wait_for(reader, 60)
        except TimeoutError:
            logs = processes.runner_log()
            raise AssertionError(f"the run did not finish:\n{logs}") from None
        view = (await client.get(f"/runs/{execution_id}")).json()
        stored = (
            await client.get(f"/runs/{execution_id}/events", params={"after": 0})
        ).json()["events"]

    assert view["status"] == "completed", view
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids)), "the socket skipped or repeated an event"
    assert ids == [e["id"] for e in stored]
    assert sum(e["event"]["type"] == "token" for e in stored) == 150
