"""A scripted conversation through the public API, printed as it happens.

    python -m capstone.demo        (``make demo``)

Starts the local stack on a fresh ``agents_demo`` database, then, with real HTTP,
Server-Sent Events and WebSocket clients:

1. alice asks over the WebSocket and watches her answer stream in;
2. bob asks an arithmetic question over HTTP and follows it over SSE: the agent
   calls the calculator tool;
3. bob's client sends the same request again, as a client retrying after a timeout
   would: same runId, same execution, and the model is not called again;
4. alice asks a second question, drops the connection halfway through the answer,
   and reconnects with ``lastEventId``: the rest of the stream arrives, with no gap
   and no repeat, and the answer shows the session remembered her first turn.

Every claim is checked; the demo exits 1 if one does not hold.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx
import websockets
from httpx_sse import aconnect_sse

from capstone import devdb
from capstone.local import LOG_DIR, local_stack

DEMO_DATABASE = "agents_demo"


class DemoFailure(Exception):
    pass


def check(condition: bool, claim: str) -> None:
    if not condition:
        raise DemoFailure(claim)
    print(f"   ✓ {claim}")


def heading(text: str) -> None:
    print(f"\n── {text}")


class Printer:
    """Prints events as a person reads them: tokens flow as text, the rest as lines."""

    def __init__(self) -> None:
        self.in_text = False

    def show(self, stored: dict[str, Any]) -> None:
        event = stored["event"]
        kind = event["type"]
        if kind == "token":
            if not self.in_text:
                print(f"   #{stored['id']:<4} answer: ", end="")
                self.in_text = True
            print(event["text"], end="", flush=True)
            return
        self.end_text()
        if kind == "run_accepted":
            detail = f"runId={event['runId']} message={event['message']!r}"
        elif kind == "tool_call":
            detail = f"{event['tool']}({json.dumps(event['arguments'])})"
        elif kind == "tool_result":
            detail = f"{event['tool']} -> {event['output'] or event['error']}"
        elif kind == "completed":
            usage = event["usage"]
            detail = (
                f"{usage['modelCalls']} model call(s), "
                f"{usage['promptTokens']} prompt + "
                f"{usage['completionTokens']} completion tokens"
            )
        elif kind == "failed":
            detail = event["error"]["message"]
        else:
            detail = event.get("reason", "")
        print(f"   #{stored['id']:<4} {kind:<13} {detail}")

    def end_text(self) -> None:
        if self.in_text:
            print()
            self.in_text = False


async def ask_over_socket(
    ws_url: str,
    session: str,
    run_id: str,
    message: str,
    printer: Printer,
    hang_up_after_tokens: int | None = None,
    last_event_id: int = 0,
) -> tuple[list[dict[str, Any]], bool]:
    """Ask on the session socket; return the events seen and whether the run ended."""
    seen: list[dict[str, Any]] = []
    url = f"{ws_url}/ws/{session}?lastEventId={last_event_id}"
    async with websockets.connect(url) as socket:
        await socket.send(
            json.dumps({"type": "ask", "runId": run_id, "message": message})
        )
        tokens = 0
        async with asyncio.timeout(30):
            while True:
                frame = json.loads(await socket.recv())
                if frame["type"] == "accepted":
                    continue
                if frame["type"] == "error":
                    raise DemoFailure(
                        f"the gateway refused: {frame['error']['message']}"
                    )
                stored = frame["event"]
                seen.append(stored)
                printer.show(stored)
                if stored["event"]["type"] in ("completed", "failed", "cancelled"):
                    printer.end_text()
                    return seen, True
                if stored["event"]["type"] == "token":
                    tokens += 1
                    if (
                        hang_up_after_tokens is not None
                        and tokens >= hang_up_after_tokens
                    ):
                        printer.end_text()
                        return seen, False


async def resume_socket(
    ws_url: str, session: str, last_event_id: int, printer: Printer
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with websockets.connect(
        f"{ws_url}/ws/{session}?lastEventId={last_event_id}"
    ) as socket:
        async with asyncio.timeout(30):
            while True:
                frame = json.loads(await socket.recv())
                stored = frame["event"]
                seen.append(stored)
                printer.show(stored)
                if stored["event"]["type"] in ("completed", "failed", "cancelled"):
                    printer.end_text()
                    return seen


async def follow_sse(
    client: httpx.AsyncClient, execution_id: str, printer: Printer
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with aconnect_sse(client, "GET", f"/runs/{execution_id}/events") as source:
        async for sse in source.aiter_sse():
            stored = json.loads(sse.data)
            seen.append(stored)
            printer.show(stored)
    printer.end_text()
    return seen


async def converse(gateway_url: str, model_url: str | None) -> None:
    ws_url = gateway_url.replace("http://", "ws://")
    printer = Printer()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        heading("1. alice asks over the WebSocket  (WS /ws/alice)")
        first, ended = await ask_over_socket(
            ws_url, "alice", "alice-1", "Hi, I'm Alice. Please remember me.", printer
        )
        check(
            ended and first[-1]["event"]["type"] == "completed", "alice's run completed"
        )

        heading("2. bob asks over HTTP and follows the run over SSE")
        print(
            "   POST /agents/bob/runs {runId: bob-1, message: 'What is 12 * (3 + 4)?'}"
        )
        reply = await client.post(
            "/agents/bob/runs",
            json={"runId": "bob-1", "message": "What is 12 * (3 + 4)?"},
        )
        check(reply.status_code == 202, "202 Accepted")
        execution_id = reply.json()["executionId"]
        print(f"   executionId {execution_id}")
        bob_events = await follow_sse(client, execution_id, printer)
        kinds = [e["event"]["type"] for e in bob_events]
        check(
            "tool_call" in kinds and "tool_result" in kinds,
            "the agent used the calculator",
        )
        view = (await client.get(f"/runs/{execution_id}")).json()
        check(
            view["status"] == "completed" and "84" in view["answer"],
            f"answer: {view['answer']!r}",
        )

        heading("3. bob's client retries the same request (same runId)")
        calls_before = await _model_calls(model_url)
        again = await client.post(
            "/agents/bob/runs",
            json={"runId": "bob-1", "message": "What is 12 * (3 + 4)?"},
        )
        check(again.json()["executionId"] == execution_id, "same executionId as before")
        await asyncio.sleep(1.0)
        page = (
            await client.get(f"/runs/{execution_id}/events", params={"after": 0})
        ).json()
        check(
            len(page["events"]) == len(bob_events),
            f"still {len(bob_events)} events: it did not run twice",
        )
        if model_url is not None:
            check(
                await _model_calls(model_url) == calls_before,
                f"the model was called {calls_before} times in all, no more",
            )

        heading("4. alice asks again, loses her connection halfway, reconnects")
        before, ended = await ask_over_socket(
            ws_url,
            "alice",
            "alice-2",
            "Do you remember what I told you?",
            printer,
            hang_up_after_tokens=3,
            last_event_id=first[-1]["id"],
        )
        check(not ended, f"connection dropped after event #{before[-1]['id']}")
        await asyncio.sleep(0.3)
        print(f"   reconnecting: WS /ws/alice?lastEventId={before[-1]['id']}")
        after = await resume_socket(ws_url, "alice", before[-1]["id"], printer)
        execution_2 = before[0]["executionId"]
        stored = (
            await client.get(f"/runs/{execution_2}/events", params={"after": 0})
        ).json()
        ids = [e["id"] for e in before + after]
        check(ids == [e["id"] for e in stored["events"]], "no gap, no repeat, in order")
        answer = stored["events"][-1]["event"]["answer"]
        check(
            answer.startswith("Reply 2:"),
            "the model got alice's first turn back from Postgres",
        )


async def _model_calls(model_url: str | None) -> int:
    if model_url is None:
        return 0
    async with httpx.AsyncClient(base_url=model_url) as client:
        return len((await client.get("/_offline/calls")).json())


def main() -> int:
    started = time.monotonic()
    print(
        "Starting embedded Postgres, the offline model, runner-0, runner-1 "
        "and the gateway"
    )
    try:
        with local_stack(
            DEMO_DATABASE, runners=2, token_delay=0.04, fresh=True
        ) as stack:
            print(f"   database {devdb.redact(stack.database_url)}")
            print(f"   gateway  {stack.gateway_url}  (logs in {LOG_DIR}/)")
            asyncio.run(converse(stack.gateway_url, stack.model_url))
    except DemoFailure as failure:
        print(f"\n✗ {failure}\n  process logs are in {LOG_DIR}/", file=sys.stderr)
        return 1
    except (RuntimeError, devdb.DatabaseUnavailable, OSError, httpx.HTTPError) as error:
        print(f"\n✗ the demo could not run: {error}", file=sys.stderr)
        return 1
    print(
        f"\nDemo finished in {time.monotonic() - started:.1f}s. "
        "The embedded Postgres keeps running for the next command; "
        "`make db-stop` stops it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
