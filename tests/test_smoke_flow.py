"""A run end to end through the public API."""

import asyncio

import httpx

from tests.conftest import Stack


async def wait_final(client: httpx.AsyncClient, execution_id: str, timeout: float = 20) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            view = (await client.get(f"/runs/{execution_id}")).json()
            if view["status"] in ("completed", "failed", "cancelled"):
                return view
            await asyncio.sleep(0.05)


async def test_calculator_run_completes(stack: Stack, session_id: str) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        reply = await client.post(
            f"/agents/{session_id}/runs", json={"runId": "r1", "message": "What is 6 * 7?"}
        )
        assert reply.status_code == 202, reply.text
        execution_id = reply.json()["executionId"]
        view = await wait_final(client, execution_id)
        assert view["status"] == "completed", view
        assert "42" in view["answer"]
        page = (await client.get(f"/runs/{execution_id}/events", params={"after": 0})).json()
        types = [e["event"]["type"] for e in page["events"]]
        assert types[0] == "run_accepted" and types[-1] == "completed"
        assert "tool_call" in types and "tool_result" in types
