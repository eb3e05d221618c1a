"""The agent run: a DBOS workflow of checkpointed steps.

    accept -> load memory -> model -> (tool -> model)* -> finish
                                   \\-> fail, when the model's retry budget is spent

The workflow ID is the execution id, derived from the client's runId, so a start
repeated for any reason finds the execution it already made. Each step writes its
events with keys of its own; a step that runs again (a retry, or a runner that died
before DBOS recorded the step as done) writes the same keys, which the event store
ignores. When a runner dies, the next runner with the same executor id resumes the
workflow from its last recorded step: steps that finished are not run again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import openai
from dbos import DBOS, StepOptions
from dbos._error import DBOSMaxStepRetriesExceeded, DBOSWorkflowCancelledError
from fastapi import FastAPI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import BaseModel

from capstone import sessions
from capstone.domain import (
    Completed,
    ErrorBody,
    Failed,
    RunAccepted,
    Token,
    ToolCall,
    ToolResult,
    Usage,
)
from capstone.eventstore import DATABASE_OUTAGE, EventStore, KeyedEvent
from capstone.runtime.settings import AGENT_WORKFLOW, RuntimeSettings
from capstone.runtime.tools import TOOLS, ToolError, run_tool

log = logging.getLogger("capstone.runtime")

SYSTEM_PROMPT = (
    "You are a helpful assistant inside a durable agent runtime. "
    "Use the calculator tool for arithmetic."
)
TOKEN_FLUSH_COUNT = 64
TOKEN_FLUSH_SECONDS = 0.05


@dataclass
class Runtime:
    """What the workflow's steps need; installed once per runner process."""

    settings: RuntimeSettings
    pool: asyncpg.Pool
    events: EventStore
    model: openai.AsyncOpenAI
    model_name: str
    # The in-process offline model, when no provider is configured; tests and
    # drills inject faults through it.
    offline_model: FastAPI | None = None


_runtime: Runtime | None = None


def install_runtime(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def current_runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the runner has not installed its runtime yet")
    return _runtime


class RunJob(BaseModel):
    """The workflow's input, as the gateway enqueues it."""

    execution_id: str
    tenant_id: str
    session_id: str
    run_id: str
    message: str


@DBOS.workflow(name=AGENT_WORKFLOW)
async def agent_run(job: dict[str, Any]) -> dict[str, Any]:
    run = RunJob.model_validate(job)
    rt = current_runtime()
    usage = Usage()

    try:
        await DBOS.run_step_async(database_step("accept"), accept_step, run)
        history = await DBOS.run_step_async(
            database_step("load_memory"), memory_step, run
        )
        messages = _conversation(history, run.message)

        answer: str | None = None
        for round_no in range(rt.settings.max_tool_rounds + 1):
            reply = await DBOS.run_step_async(
                model_step_options(rt.settings), model_step, run, round_no, messages
            )
            usage = _add_usage(usage, reply["usage"])
            if not reply["tool_calls"] or round_no == rt.settings.max_tool_rounds:
                answer = reply["text"]
                break
            messages.append(_assistant_tool_message(reply))
            for call in reply["tool_calls"]:
                output = await DBOS.run_step_async(
                    database_step("tool"), tool_step, run, round_no, call
                )
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": output}
                )

        assert answer is not None
        await DBOS.run_step_async(
            database_step("finish"), finish_step, run, answer, usage
        )
        return {"answer": answer, "usage": usage.model_dump(by_alias=True)}
    except DBOSWorkflowCancelledError:
        raise
    except Exception as error:
        body = _error_body(error, rt.settings)
        await DBOS.run_step_async(
            database_step("fail"), fail_step, run, body.model_dump()
        )
        raise


def model_step_options(settings: RuntimeSettings) -> StepOptions:
    """The model step's retry budget: bounded, with exponential backoff."""
    # lab 11.2 begin
    return {
        "name": "model",
        "retries_allowed": True,
        "max_attempts": settings.model_max_attempts,
        "interval_seconds": settings.model_retry_seconds,
        "backoff_rate": settings.model_backoff_rate,
        "should_retry": is_retryable,
        # A cancel stops an in-flight model call instead of waiting for it.
        "preemptible": True,
    }
    # lab 11.2 end


def database_step(name: str) -> StepOptions:
    """A step that only reads and writes Postgres: it rides out a short outage."""
    return {
        "name": name,
        "retries_allowed": True,
        "max_attempts": 8,
        "interval_seconds": 0.5,
        "backoff_rate": 2.0,
        "should_retry": is_database_outage,
    }


def is_database_outage(error: BaseException) -> bool:
    """Connection-level failures that a later attempt can get past."""
    return isinstance(error, DATABASE_OUTAGE)


def is_retryable(error: BaseException) -> bool:
    """Retry what a later attempt can fix: rate limits, timeouts, server errors,
    and a database that went away while the answer was being stored."""
    # lab 11.3 begin
    if isinstance(error, openai.APIStatusError):
        return error.status_code == 429 or error.status_code >= 500
    if isinstance(error, openai.APIConnectionError | openai.APITimeoutError):
        return True
    return is_database_outage(error)
    # lab 11.3 end


async def raise_if_cancelled(execution_id: str) -> None:
    """Stop before the next model call when the run has been cancelled.

    DBOS checks for a cancel when a step starts, but it sleeps between a step's
    attempts without looking, so a cancel that lands during the backoff is only
    seen here.
    """
    # lab 11.4 begin
    workflow = await DBOS.get_workflow_status_async(execution_id)
    if workflow is not None and workflow.status == "CANCELLED":
        raise DBOSWorkflowCancelledError(f"{execution_id} was cancelled")
    # lab 11.4 end


async def accept_step(run: RunJob) -> None:
    rt = current_runtime()
    accepted = RunAccepted(run_id=run.run_id, message=run.message)
    await rt.events.append(run.execution_id, [KeyedEvent("accepted", accepted)])
    log.info("run started", extra=_log_fields(run))


async def memory_step(run: RunJob) -> list[dict[str, str]]:
    rt = current_runtime()
    turns = await sessions.load_history(rt.pool, run.tenant_id, run.session_id)
    return [{"user": turn.user_message, "assistant": turn.answer} for turn in turns]


async def model_step(
    run: RunJob, round_no: int, messages: list[dict[str, Any]]
) -> dict[str, Any]:
    rt = current_runtime()
    status = DBOS.step_status
    attempt = status.current_attempt if status and status.current_attempt else 0

    await raise_if_cancelled(run.execution_id)

    log.info(
        "model call",
        extra={**_log_fields(run), "round": round_no, "attempt": attempt + 1},
    )
    stream = await rt.model.chat.completions.create(
        model=rt.model_name,
        messages=cast("list[ChatCompletionMessageParam]", messages),
        tools=cast("list[ChatCompletionToolParam]", [t.spec() for t in TOOLS.values()]),
        stream=True,
        stream_options={"include_usage": True},
    )

    text: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    usage = {"promptTokens": 0, "completionTokens": 0, "modelCalls": 1}
    pending: list[KeyedEvent] = []
    last_flush = time.monotonic()

    async for chunk in stream:
        if chunk.usage is not None:
            usage["promptTokens"] = chunk.usage.prompt_tokens
            usage["completionTokens"] = chunk.usage.completion_tokens
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                index = len(text)
                text.append(delta.content)
                token = Token(index=index, text=delta.content)
                pending.append(KeyedEvent(f"m{round_no}:tok:{index}", token))
            for part in delta.tool_calls or []:
                call = calls.setdefault(
                    part.index, {"id": "", "name": "", "arguments": ""}
                )
                if part.id:
                    call["id"] = part.id
                if part.function and part.function.name:
                    call["name"] = part.function.name
                if part.function and part.function.arguments:
                    call["arguments"] += part.function.arguments
        # Tokens go out in small batches: live enough for a reader, and one
        # transaction per batch instead of one per token.
        now = time.monotonic()
        if pending and (
            len(pending) >= TOKEN_FLUSH_COUNT or now - last_flush >= TOKEN_FLUSH_SECONDS
        ):
            await rt.events.append(run.execution_id, pending)
            pending, last_flush = [], now
    await rt.events.append(run.execution_id, pending)

    return {
        "text": "".join(text),
        "tool_calls": [calls[i] for i in sorted(calls)],
        "usage": usage,
    }


async def tool_step(run: RunJob, round_no: int, call: dict[str, str]) -> str:
    rt = current_runtime()
    bad_arguments: str | None = None
    try:
        arguments = json.loads(call["arguments"] or "{}")
        if not isinstance(arguments, dict):
            raise ValueError("arguments must be a JSON object")
    except ValueError as error:
        arguments, bad_arguments = {}, str(error)

    started = ToolCall(call_id=call["id"], tool=call["name"], arguments=arguments)
    await rt.events.append(
        run.execution_id, [KeyedEvent(f"m{round_no}:call:{call['id']}", started)]
    )

    output: str | None = None
    failure: str | None = None
    if bad_arguments is not None:
        failure = f"invalid arguments: {bad_arguments}"
    else:
        try:
            output = await run_tool(
                call["name"], arguments, rt.settings.tool_timeout_seconds
            )
        except ToolError as error:
            failure = str(error)

    result = ToolResult(
        call_id=call["id"], tool=call["name"], output=output, error=failure
    )
    await rt.events.append(
        run.execution_id, [KeyedEvent(f"m{round_no}:result:{call['id']}", result)]
    )
    # The model sees a tool's refusal as text and can recover from it.
    return output if output is not None else f"error: {failure}"


async def finish_step(run: RunJob, answer: str, usage: Usage) -> None:
    rt = current_runtime()
    completed = Completed(answer=answer, usage=usage)
    await rt.events.append(run.execution_id, [KeyedEvent("completed", completed)])

    # The turn joins the session's memory only if the run really completed: a
    # cancel that landed first closed the run, and the Completed event was dropped.
    record = await sessions.get_run(rt.pool, run.execution_id)
    assert record is not None
    if record.closed_by == "completed":
        await sessions.save_turn(rt.pool, record, run.message, answer)
        log.info("run completed", extra=_log_fields(run))


async def fail_step(run: RunJob, error: dict[str, Any]) -> None:
    rt = current_runtime()
    failed = Failed(error=ErrorBody.model_validate(error))
    await rt.events.append(run.execution_id, [KeyedEvent("failed", failed)])
    log.warning("run failed: %s", error["message"], extra=_log_fields(run))


def _conversation(history: list[dict[str, str]], message: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    for turn in history:
        messages.append({"role": "user", "content": turn["user"]})
        messages.append({"role": "assistant", "content": turn["assistant"]})
    messages.append({"role": "user", "content": message})
    return messages


def _assistant_tool_message(reply: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": reply["text"] or None,
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for call in reply["tool_calls"]
        ],
    }


def _add_usage(total: Usage, more: dict[str, int]) -> Usage:
    return Usage(
        prompt_tokens=total.prompt_tokens + more["promptTokens"],
        completion_tokens=total.completion_tokens + more["completionTokens"],
        model_calls=total.model_calls + more["modelCalls"],
    )


def _error_body(error: Exception, settings: RuntimeSettings) -> ErrorBody:
    if isinstance(error, DBOSMaxStepRetriesExceeded):
        last = error.errors[-1] if error.errors else error
        return ErrorBody(
            code="model_unavailable",
            message=(
                f"the model failed on all {settings.model_max_attempts} attempts "
                f"of its retry budget; last error: {type(last).__name__}"
            ),
        )
    return ErrorBody(
        code="run_failed", message=f"the run failed: {type(error).__name__}"
    )


def _log_fields(run: RunJob) -> dict[str, str]:
    return {
        "tenant_id": run.tenant_id,
        "session_id": run.session_id,
        "run_id": run.run_id,
        "execution_id": run.execution_id,
    }
