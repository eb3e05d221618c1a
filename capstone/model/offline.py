"""An offline, scripted stand-in for an OpenAI-compatible chat model.

It answers ``POST /v1/chat/completions`` the way the OpenAI API does, streamed or
not, so the capstone runs with no key and no network. It understands nothing: every
reply follows the rules below, and the same conversation always gets the same reply.
It reports itself as ``offline-scripted-1`` whatever model the request names.

The rules, checked in order:

1. The last message has role ``tool``: the reply is ``The calculator says {content}.``
2. The last user message holds an arithmetic expression, and the request offers a
   tool named ``calculator`` (with ``tool_choice`` other than ``"none"``): the reply
   is one call to ``calculator`` with the arguments ``{"expression": "..."}`` and the
   call id ``call_`` + the first 12 hex digits of the expression's SHA-256. The
   expression is the longest run of digits, spaces and ``+ - * / ( ) .`` with at
   least one operator and two numbers, less a trailing full stop and unmatched
   brackets: "What is 12 * (3 + 4)?" gives ``12 * (3 + 4)``.
3. The last user message says ``count to N`` (any case, 1 <= N <= 10000): the reply
   is ``1 2 3 ... N``, one number a chunk.
4. Otherwise: ``Reply {k}: you said "{message}".``, where k counts the user messages
   in the conversation, so a demo shows whether the session's history was sent.

Text streams a word a chunk, each word with the whitespace before it; a tool call
streams as OpenAI streams one: the id and name first, then the arguments in
fragments. Usage counts words, not real tokens: prompt tokens are the
whitespace-separated words in all messages, completion tokens the content chunks (1
for a tool call).

Faults for tests and drills wait in a ``FaultPlan``, filled in process or through
``POST /_offline/faults``. A fault applies to the next ``times`` requests whose last
user message contains ``match`` (any request when ``match`` is null): ``error``
answers 500, ``rate_limit`` answers 429 with ``Retry-After: 1``, ``timeout`` waits
``delay_seconds`` and then answers normally. Every request is kept in a ``CallLog``
(``GET /_offline/calls``).

    python -m capstone.model.offline --host 127.0.0.1 --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

MODEL_NAME = "offline-scripted-1"
CALCULATOR_TOOL = "calculator"
MAX_COUNT = 10_000
ARGUMENT_FRAGMENT_CHARS = 8

FaultKind = Literal["error", "rate_limit", "timeout"]
Outcome = Literal["ok", "error", "rate_limit", "timeout"]

logger = logging.getLogger("capstone.model")


class Fault(BaseModel):
    """A failure the offline model plays for the next ``times`` matching requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    times: int = Field(ge=1)
    match: str | None = Field(
        None, description="applies only when the last user message contains this"
    )
    delay_seconds: float = Field(30.0, ge=0, description="how long a timeout waits")

    def applies_to(self, last_user_message: str) -> bool:
        return self.match is None or self.match in last_user_message


class FaultPlan:
    """Faults waiting for requests, oldest first. Safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(
        self,
        kind: FaultKind,
        times: int,
        match: str | None = None,
        delay_seconds: float = 30.0,
    ) -> Fault:
        """Queue a fault; ValueError for an unknown kind, times < 1 or a delay < 0."""
        fault = Fault(kind=kind, times=times, match=match, delay_seconds=delay_seconds)
        with self._lock:
            self._pending.append(fault)
        logger.info("offline model: %s fault queued for %d request(s)", kind, times)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._pending)

    def take(self, last_user_message: str) -> Fault | None:
        """Use up one application of the oldest fault that matches the request."""
        with self._lock:
            for position, fault in enumerate(self._pending):
                if not fault.applies_to(last_user_message):
                    continue

                if fault.times == 1:
                    del self._pending[position]
                else:
                    remaining = fault.model_copy(update={"times": fault.times - 1})
                    self._pending[position] = remaining
                return fault
        return None


class CallRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    last_user_message: str
    outcome: Outcome
    stream: bool


class CallLog:
    """Every chat completion request the offline model saw, oldest first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[CallRecord] = []

    def record(self, last_user_message: str, outcome: Outcome, stream: bool) -> None:
        entry = CallRecord(
            at=datetime.now(UTC),
            last_user_message=last_user_message,
            outcome=outcome,
            stream=stream,
        )
        with self._lock:
            self._records.append(entry)

    def records(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def count(self, match: str | None = None, outcome: str | None = None) -> int:
        """How many requests contained ``match`` and ended in ``outcome``."""
        return sum(
            1
            for entry in self.records()
            if (match is None or match in entry.last_user_message)
            and (outcome is None or entry.outcome == outcome)
        )


class _OpenModel(BaseModel):
    # Clients send many fields the offline model has no use for; it accepts them.
    model_config = ConfigDict(extra="allow")


class ChatMessage(_OpenModel):
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(
            str(part.get("text", ""))
            for part in self.content
            if part.get("type") == "text"
        )


class ToolFunction(_OpenModel):
    name: str


class ToolSpec(_OpenModel):
    type: str = "function"
    function: ToolFunction | None = None


class StreamOptions(_OpenModel):
    include_usage: bool = False


class ChatRequest(_OpenModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolSpec] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def offers_tool(self, name: str) -> bool:
        if self.tool_choice == "none":
            return False
        return any(
            tool.function is not None and tool.function.name == name
            for tool in self.tools or []
        )

    def last_user_message(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text()
        return ""

    def user_message_count(self) -> int:
        return sum(1 for message in self.messages if message.role == "user")

    def prompt_words(self) -> int:
        return sum(len(message.text().split()) for message in self.messages)


@dataclass(frozen=True)
class ScriptedToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ScriptedReply:
    """What the offline model answers: text tokens, or one tool call."""

    tokens: tuple[str, ...] = ()
    tool_call: ScriptedToolCall | None = None

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def finish_reason(self) -> str:
        return "stop" if self.tool_call is None else "tool_calls"

    @property
    def completion_tokens(self) -> int:
        return 1 if self.tool_call is not None else len(self.tokens)


_EXPRESSION_RUN = re.compile(r"[0-9 +\-*/().]+")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")
_OPERATOR = re.compile(r"[+\-*/]")
_COUNT_TO = re.compile(r"\bcount to ([0-9]+)\b", re.IGNORECASE)
_WORD = re.compile(r"\s*\S+")


def find_expression(text: str) -> str | None:
    """The longest arithmetic expression in ``text``, or None."""
    best: str | None = None
    for run in _EXPRESSION_RUN.findall(text):
        candidate = _trim_expression(run)
        if len(_NUMBER.findall(candidate)) < 2 or not _OPERATOR.search(candidate):
            continue

        if best is None or len(candidate) > len(best):
            best = candidate
    return best


def _trim_expression(run: str) -> str:
    # "(is it 2 + 3)." leaves " 2 + 3).": the full stop and the bracket are prose.
    previous = None
    candidate = run
    while candidate != previous:
        previous = candidate
        candidate = candidate.strip(" ").rstrip(".")
        if candidate.startswith(".") and not candidate[1:2].isdigit():
            candidate = candidate[1:]
        if candidate.endswith(")") and candidate.count(")") > candidate.count("("):
            candidate = candidate[:-1]
        if candidate.startswith("(") and candidate.count("(") > candidate.count(")"):
            candidate = candidate[1:]
    return candidate


def find_count(text: str) -> int | None:
    """N from "count to N", when 1 <= N <= MAX_COUNT."""
    found = _COUNT_TO.search(text)
    if found is None:
        return None

    limit = int(found.group(1))
    return limit if 1 <= limit <= MAX_COUNT else None


def words(text: str) -> tuple[str, ...]:
    """``text`` cut into words, each carrying the whitespace before it."""
    return tuple(_WORD.findall(text))


def calculator_call(expression: str) -> ScriptedToolCall:
    digest = hashlib.sha256(expression.encode()).hexdigest()
    return ScriptedToolCall(
        id=f"call_{digest[:12]}",
        name=CALCULATOR_TOOL,
        arguments=json.dumps({"expression": expression}),
    )


def script_reply(chat: ChatRequest) -> ScriptedReply:
    """The reply the rules in this module's docstring give for ``chat``."""
    last = chat.messages[-1]
    if last.role == "tool":
        return ScriptedReply(tokens=words(f"The calculator says {last.text()}."))

    message = chat.last_user_message()
    expression = find_expression(message)
    if expression is not None and chat.offers_tool(CALCULATOR_TOOL):
        return ScriptedReply(tool_call=calculator_call(expression))

    limit = find_count(message)
    if limit is not None:
        numbers = ("1", *(f" {n}" for n in range(2, limit + 1)))
        return ScriptedReply(tokens=numbers)

    reply = f'Reply {chat.user_message_count()}: you said "{message}".'
    return ScriptedReply(tokens=words(reply))


def _completion_id(chat: ChatRequest) -> str:
    conversation = json.dumps(
        [message.model_dump() for message in chat.messages], sort_keys=True
    )
    return "chatcmpl-" + hashlib.sha256(conversation.encode()).hexdigest()[:24]


def _usage(chat: ChatRequest, reply: ScriptedReply) -> dict[str, int]:
    prompt = chat.prompt_words()
    completion = reply.completion_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion_body(chat: ChatRequest, reply: ScriptedReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_call is not None:
        message["tool_calls"] = [
            {
                "id": reply.tool_call.id,
                "type": "function",
                "function": {
                    "name": reply.tool_call.name,
                    "arguments": reply.tool_call.arguments,
                },
            }
        ]

    return {
        "id": _completion_id(chat),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_NAME,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage(chat, reply),
    }


def _deltas(reply: ScriptedReply) -> list[dict[str, Any]]:
    if reply.tool_call is None:
        first, *rest = reply.tokens
        return [
            {"role": "assistant", "content": first},
            *({"content": token} for token in rest),
        ]

    call = reply.tool_call
    head: dict[str, Any] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
        ],
    }
    fragments = [
        call.arguments[start : start + ARGUMENT_FRAGMENT_CHARS]
        for start in range(0, len(call.arguments), ARGUMENT_FRAGMENT_CHARS)
    ]
    return [
        head,
        *(
            {"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}
            for fragment in fragments
        ),
    ]


def _choice(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
    return {
        "index": 0,
        "delta": delta,
        "finish_reason": finish_reason,
        "logprobs": None,
    }


async def _stream_events(
    chat: ChatRequest, reply: ScriptedReply, token_delay_seconds: float
) -> AsyncIterator[str]:
    completion_id = _completion_id(chat)
    created = int(time.time())
    options = chat.stream_options
    include_usage = options is not None and options.include_usage

    def event(choices: list[dict[str, Any]], usage: dict[str, int] | None) -> str:
        chunk: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_NAME,
            "system_fingerprint": None,
            "choices": choices,
        }
        # OpenAI sends "usage": null on every chunk once usage was asked for.
        if include_usage:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"

    for position, delta in enumerate(_deltas(reply)):
        if position and token_delay_seconds:
            await asyncio.sleep(token_delay_seconds)
        yield event([_choice(delta, None)], None)

    yield event([_choice({}, reply.finish_reason)], None)
    if include_usage:
        yield event([], _usage(chat, reply))
    yield "data: [DONE]\n\n"


def _error_response(
    status_code: int,
    message: str,
    error_type: str,
    code: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": error_type, "code": code}}
    return JSONResponse(body, status_code=status_code, headers=headers)


async def _play_fault(fault: Fault) -> JSONResponse | None:
    """The failure ``fault`` answers with; a timeout waits, then lets the reply go."""
    if fault.kind == "error":
        return _error_response(
            500,
            "The offline model failed on purpose (injected error fault).",
            "server_error",
            "server_error",
        )
    if fault.kind == "rate_limit":
        return _error_response(
            429,
            f"Rate limit reached for {MODEL_NAME} (injected rate_limit fault).",
            "requests",
            "rate_limit_exceeded",
            headers={"Retry-After": "1"},
        )

    await asyncio.sleep(fault.delay_seconds)
    return None


def _first_problem(exc: RequestValidationError) -> str:
    problems = exc.errors()
    if not problems:
        return "the body does not fit the schema."

    first = problems[0]
    if first.get("type") == "json_invalid":
        return "the body is not valid JSON."
    where = ".".join(str(part) for part in first["loc"] if part != "body")
    return f"{where or 'body'}: {first['msg']}."


def create_offline_model_app(
    faults: FaultPlan | None = None, *, token_delay_seconds: float = 0.0
) -> FastAPI:
    """The offline model as an ASGI app; its state holds ``faults`` and ``calls``.

    ``token_delay_seconds`` paces streamed chunks, for demos that should look typed.
    """
    if token_delay_seconds < 0:
        raise ValueError("token_delay_seconds must not be negative")

    app = FastAPI(title="Offline scripted model", version=MODEL_NAME)
    app.state.faults = faults if faults is not None else FaultPlan()
    app.state.calls = CallLog()

    @app.exception_handler(RequestValidationError)
    async def reject_invalid_request(
        request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        message = "Invalid request: " + _first_problem(exc)
        return _error_response(400, message, "invalid_request_error", "invalid_request")

    @app.post("/v1/chat/completions", response_model=None)
    async def create_chat_completion(chat: ChatRequest) -> Response:
        plan: FaultPlan = app.state.faults
        calls: CallLog = app.state.calls
        message = chat.last_user_message()
        fault = plan.take(message)
        calls.record(message, "ok" if fault is None else fault.kind, chat.stream)

        if fault is not None:
            logger.info("offline model: playing a %s fault", fault.kind)
            failure = await _play_fault(fault)
            if failure is not None:
                return failure

        reply = script_reply(chat)
        if not chat.stream:
            return JSONResponse(_completion_body(chat, reply))

        return StreamingResponse(
            _stream_events(chat, reply, token_delay_seconds),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        model = {"id": MODEL_NAME, "object": "model", "owned_by": "offline"}
        return {"object": "list", "data": [{**model, "created": 0}]}

    @app.post("/_offline/faults", status_code=201)
    async def add_fault(fault: Fault) -> Fault:
        plan: FaultPlan = app.state.faults
        return plan.add(fault.kind, fault.times, fault.match, fault.delay_seconds)

    @app.get("/_offline/faults")
    async def list_faults() -> list[Fault]:
        plan: FaultPlan = app.state.faults
        return plan.pending()

    @app.delete("/_offline/faults", status_code=204)
    async def clear_faults() -> None:
        plan: FaultPlan = app.state.faults
        plan.clear()

    @app.get("/_offline/calls")
    async def list_calls() -> list[CallRecord]:
        calls: CallLog = app.state.calls
        return calls.records()

    @app.delete("/_offline/calls", status_code=204)
    async def clear_calls() -> None:
        calls: CallLog = app.state.calls
        calls.clear()

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m capstone.model.offline",
        description="Serve the offline scripted chat model on this machine.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--token-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="pause between streamed chunks",
    )
    args = parser.parse_args(argv)

    # The control plane has no authentication: whoever reaches the port can make
    # the model fail, so only this machine may reach it.
    if not is_loopback(args.host):
        parser.error(
            f"refusing to listen on {args.host!r}: the offline model serves only "
            "loopback addresses (127.0.0.1, ::1, localhost)"
        )
    if args.token_delay < 0:
        parser.error("--token-delay must not be negative")

    app = create_offline_model_app(token_delay_seconds=args.token_delay)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
