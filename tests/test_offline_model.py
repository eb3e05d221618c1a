"""The offline model, spoken to by the real OpenAI client in process and on a socket."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx2
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from capstone.model.client import (
    OFFLINE_BASE_URL,
    PLACEHOLDER_API_KEY,
    PROVIDER_BASE_URL,
    ModelSettings,
    describe,
    make_model_client,
)
from capstone.model.offline import (
    MODEL_NAME,
    CallLog,
    ChatRequest,
    FaultPlan,
    create_offline_model_app,
    find_expression,
    is_loopback,
    main,
    script_reply,
)

pytestmark = pytest.mark.timeout(20)

CALCULATOR: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}
QUESTION = "What is 12 * (3 + 4)?"
QUESTION_CALL_ID = "call_" + hashlib.sha256(b"12 * (3 + 4)").hexdigest()[:12]


@dataclass
class ServedModel:
    app: FastAPI
    base_url: str


@dataclass
class Model:
    client: openai.AsyncOpenAI
    app: FastAPI

    @property
    def faults(self) -> FaultPlan:
        plan: FaultPlan = self.app.state.faults
        return plan

    @property
    def calls(self) -> CallLog:
        log: CallLog = self.app.state.calls
        return log


@pytest.fixture(scope="module")
def served_model() -> Iterator[ServedModel]:
    app = create_offline_model_app()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, daemon=True
    )
    thread.start()

    deadline = time.monotonic() + 5
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the offline model did not start on a socket")
        time.sleep(0.01)

    yield ServedModel(app=app, base_url=f"http://127.0.0.1:{port}")

    server.should_exit = True
    thread.join(timeout=5)
    listener.close()


@pytest.fixture(params=["in_process", "socket"])
async def model(
    request: pytest.FixtureRequest, served_model: ServedModel
) -> AsyncIterator[Model]:
    if request.param == "in_process":
        app = create_offline_model_app()
        settings = ModelSettings(None, None, MODEL_NAME, timeout_seconds=5)
        client = make_model_client(settings, offline_app=app)
    else:
        app = served_model.app
        app.state.faults.clear()
        app.state.calls.clear()
        settings = ModelSettings(None, f"{served_model.base_url}/v1", MODEL_NAME, 5)
        client = make_model_client(settings)

    yield Model(client=client, app=app)

    await client.close()


def user(text: str) -> ChatCompletionMessageParam:
    return {"role": "user", "content": text}


async def stream_contents(
    model: Model, messages: list[ChatCompletionMessageParam]
) -> tuple[list[str], list[Any]]:
    """The content of every chunk that carried some, and every chunk."""
    stream = await model.client.chat.completions.create(
        model=MODEL_NAME,
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    contents = [
        choice.delta.content
        for chunk in chunks
        for choice in chunk.choices
        if choice.delta.content
    ]
    return contents, chunks


async def test_plain_reply_without_streaming(model: Model) -> None:
    completion = await model.client.chat.completions.create(
        model=MODEL_NAME, messages=[user("hello there")]
    )

    choice = completion.choices[0]
    assert choice.message.content == 'Reply 1: you said "hello there".'
    assert choice.finish_reason == "stop"
    assert completion.model == MODEL_NAME
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2
    assert completion.usage.completion_tokens == 6
    assert completion.usage.total_tokens == 8


async def test_reply_counts_the_user_messages_in_the_conversation(
    model: Model,
) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        user("first"),
        {"role": "assistant", "content": 'Reply 1: you said "first".'},
        user("second"),
    ]

    completion = await model.client.chat.completions.create(
        model=MODEL_NAME, messages=messages
    )

    assert completion.choices[0].message.content == 'Reply 2: you said "second".'


async def test_plain_reply_streams_a_word_a_chunk_with_usage_last(
    model: Model,
) -> None:
    contents, chunks = await stream_contents(model, [user("hello there")])

    assert contents == ["Reply", " 1:", " you", " said", ' "hello', ' there".']
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(contents)
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_stream_without_include_usage_sends_no_usage(model: Model) -> None:
    stream = await model.client.chat.completions.create(
        model=MODEL_NAME, messages=[user("hello")], stream=True
    )

    chunks = [chunk async for chunk in stream]

    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_count_to_2000_streams_each_number_in_its_own_chunk(
    model: Model,
) -> None:
    contents, chunks = await stream_contents(model, [user("Please count to 2000")])

    assert contents == ["1", *(f" {n}" for n in range(2, 2001))]
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 2000
    assert usage.prompt_tokens == 4


async def test_calculator_call_without_streaming_then_the_tool_result(
    model: Model,
) -> None:
    messages: list[ChatCompletionMessageParam] = [user(QUESTION)]

    first = await model.client.chat.completions.create(
        model=MODEL_NAME, messages=messages, tools=[CALCULATOR]
    )

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.id == QUESTION_CALL_ID
    assert call.function.name == "calculator"
    assert json.loads(call.function.arguments) == {"expression": "12 * (3 + 4)"}
    assert first.usage is not None
    assert first.usage.completion_tokens == 1

    messages += [
        choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": "84"},
    ]
    second = await model.client.chat.completions.create(
        model=MODEL_NAME, messages=messages, tools=[CALCULATOR]
    )

    assert second.choices[0].message.content == "The calculator says 84."
    assert second.choices[0].finish_reason == "stop"


async def test_calculator_call_streams_like_openai_then_the_tool_result(
    model: Model,
) -> None:
    stream = await model.client.chat.completions.create(
        model=MODEL_NAME, messages=[user(QUESTION)], tools=[CALCULATOR], stream=True
    )

    ids: list[str] = []
    names: list[str] = []
    fragments: list[str] = []
    finish_reasons: list[str] = []
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or []:
                assert delta.index == 0
                if delta.id:
                    ids.append(delta.id)
                if delta.function and delta.function.name:
                    names.append(delta.function.name)
                if delta.function and delta.function.arguments:
                    fragments.append(delta.function.arguments)

    assert ids == [QUESTION_CALL_ID]
    assert names == ["calculator"]
    assert len(fragments) > 1
    assert json.loads("".join(fragments)) == {"expression": "12 * (3 + 4)"}
    assert finish_reasons == ["tool_calls"]

    contents, _ = await stream_contents(
        model,
        [
            user(QUESTION),
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": ids[0],
                        "type": "function",
                        "function": {"name": names[0], "arguments": "".join(fragments)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": ids[0], "content": "84"},
        ],
    )
    assert "".join(contents) == "The calculator says 84."


async def test_arithmetic_without_the_calculator_tool_gets_a_plain_reply(
    model: Model,
) -> None:
    completion = await model.client.chat.completions.create(
        model=MODEL_NAME, messages=[user(QUESTION)]
    )

    message = completion.choices[0].message
    assert message.tool_calls is None
    assert message.content == f'Reply 1: you said "{QUESTION}".'


async def test_models_list_names_the_offline_model(model: Model) -> None:
    page = await model.client.models.list()

    assert [entry.id for entry in page.data] == [MODEL_NAME]


async def test_invalid_request_is_a_400_with_an_openai_error_body(
    model: Model,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await model.client.chat.completions.create(model=MODEL_NAME, messages=[])

    assert caught.value.type == "invalid_request_error"
    assert "messages" in caught.value.message


async def test_rate_limit_fault_raises_rate_limit_error(model: Model) -> None:
    model.faults.add("rate_limit", times=1)

    with pytest.raises(openai.RateLimitError) as caught:
        await model.client.chat.completions.create(
            model=MODEL_NAME, messages=[user("hello")]
        )

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"
    assert model.calls.count(outcome="rate_limit") == 1


async def test_error_fault_raises_internal_server_error(model: Model) -> None:
    model.faults.add("error", times=1)

    with pytest.raises(openai.InternalServerError) as caught:
        await model.client.chat.completions.create(
            model=MODEL_NAME, messages=[user("hello")]
        )

    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"


async def test_a_fault_fails_a_streamed_request_before_any_chunk(
    model: Model,
) -> None:
    model.faults.add("error", times=1)

    with pytest.raises(openai.InternalServerError):
        await model.client.chat.completions.create(
            model=MODEL_NAME, messages=[user("hello")], stream=True
        )

    assert [entry.stream for entry in model.calls.records()] == [True]


async def test_timeout_fault_times_out_a_client_with_a_shorter_timeout(
    model: Model,
) -> None:
    model.faults.add("timeout", times=1, delay_seconds=2)
    impatient = model.client.with_options(timeout=0.3)

    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await impatient.chat.completions.create(
            model=MODEL_NAME, messages=[user("hello")]
        )

    assert time.monotonic() - started < 1.5
    assert model.calls.count(outcome="timeout") == 1


async def test_a_timeout_fault_answers_normally_once_the_delay_is_over(
    model: Model,
) -> None:
    model.faults.add("timeout", times=1, delay_seconds=0.2)

    started = time.monotonic()
    completion = await model.client.chat.completions.create(
        model=MODEL_NAME, messages=[user("hello")]
    )

    assert time.monotonic() - started >= 0.2
    assert completion.choices[0].message.content == 'Reply 1: you said "hello".'


async def test_a_fault_with_match_hits_only_matching_messages(model: Model) -> None:
    model.faults.add("error", times=1, match="boom")

    await model.client.chat.completions.create(
        model=MODEL_NAME, messages=[user("hello")]
    )
    with pytest.raises(openai.InternalServerError):
        await model.client.chat.completions.create(
            model=MODEL_NAME, messages=[user("boom now")]
        )
    await model.client.chat.completions.create(
        model=MODEL_NAME, messages=[user("boom again")]
    )

    outcomes = [(e.last_user_message, e.outcome) for e in model.calls.records()]
    assert outcomes == [("hello", "ok"), ("boom now", "error"), ("boom again", "ok")]
    assert model.calls.count(match="boom") == 2
    assert model.calls.count(match="boom", outcome="error") == 1


async def test_a_fault_applies_exactly_times_times(model: Model) -> None:
    model.faults.add("rate_limit", times=2)

    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            await model.client.chat.completions.create(
                model=MODEL_NAME, messages=[user("hello")]
            )
    completion = await model.client.chat.completions.create(
        model=MODEL_NAME, messages=[user("hello")]
    )

    assert completion.choices[0].message.content == 'Reply 1: you said "hello".'
    assert model.calls.count(outcome="rate_limit") == 2
    assert model.calls.count(outcome="ok") == 1
    assert model.faults.pending() == []


async def test_control_plane_over_http(served_model: ServedModel) -> None:
    served_model.app.state.faults.clear()
    settings = ModelSettings(None, f"{served_model.base_url}/v1", MODEL_NAME)
    model_client = make_model_client(settings)

    async with httpx2.AsyncClient(base_url=served_model.base_url) as http:
        await http.delete("/_offline/calls")
        added = await http.post(
            "/_offline/faults", json={"kind": "error", "times": 3, "match": "boom"}
        )
        refused = await http.post("/_offline/faults", json={"kind": "melt", "times": 1})
        too_few = await http.post(
            "/_offline/faults", json={"kind": "error", "times": 0}
        )
        broken = await http.post(
            "/_offline/faults",
            content=b"not json",
            headers={"content-type": "application/json"},
        )
        pending = await http.get("/_offline/faults")

        with pytest.raises(openai.InternalServerError):
            await model_client.chat.completions.create(
                model=MODEL_NAME, messages=[user("boom")]
            )
        calls = await http.get("/_offline/calls")

        cleared = await http.delete("/_offline/faults")
        await model_client.chat.completions.create(
            model=MODEL_NAME, messages=[user("boom")]
        )
        calls_after_clear = await http.get("/_offline/calls")

        await http.delete("/_offline/calls")
        emptied = await http.get("/_offline/calls")

    await model_client.close()
    assert added.status_code == 201
    assert added.json() == {
        "kind": "error",
        "times": 3,
        "match": "boom",
        "delay_seconds": 30.0,
    }
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid_request_error"
    assert too_few.status_code == 400
    assert "times" in too_few.json()["error"]["message"]
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]["message"]
    assert [fault["kind"] for fault in pending.json()] == ["error"]
    [record] = calls.json()
    assert record["last_user_message"] == "boom"
    assert record["outcome"] == "error"
    assert record["stream"] is False
    assert datetime.fromisoformat(record["at"]).tzinfo is not None
    assert cleared.status_code == 204
    assert [r["outcome"] for r in calls_after_clear.json()] == ["error", "ok"]
    assert emptied.json() == []


def test_fault_plan_refuses_faults_that_cannot_apply() -> None:
    plan = FaultPlan()

    with pytest.raises(ValueError):
        plan.add("error", times=0)
    with pytest.raises(ValueError):
        plan.add("melt", times=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        plan.add("timeout", times=1, delay_seconds=-1)

    assert plan.pending() == []


def test_fault_plan_plays_the_oldest_matching_fault_first() -> None:
    plan = FaultPlan()
    plan.add("timeout", times=1, match="slow", delay_seconds=1)
    plan.add("error", times=1)
    plan.add("rate_limit", times=1)

    taken = [plan.take(message) for message in ("be slow", "be slow", "x", "x")]

    kinds = [fault.kind if fault else None for fault in taken]
    assert kinds == ["timeout", "error", "rate_limit", None]


def test_fault_plan_never_plays_a_fault_more_than_times_across_threads() -> None:
    plan = FaultPlan()
    plan.add("error", times=500)
    taken: list[int] = []

    def take_all() -> None:
        taken.append(sum(1 for _ in range(200) if plan.take("hello") is not None))

    threads = [threading.Thread(target=take_all) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(taken) == 500


@pytest.mark.parametrize(
    ("text", "expression"),
    [
        ("What is 12 * (3 + 4)?", "12 * (3 + 4)"),
        ("Compute 2 + 2.", "2 + 2"),
        ("(is it 10 / 4)", "10 / 4"),
        ("Add 1.5 and 2, then 7-3 and 100 - 20 * 3", "100 - 20 * 3"),
        ("Python 3.11 is out", None),
        ("count to 10", None),
        ("no numbers here", None),
    ],
)
def test_find_expression(text: str, expression: str | None) -> None:
    assert find_expression(text) == expression


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("count to 3", "1 2 3"),
        ("COUNT TO 1", "1"),
        ("count to 0", 'Reply 1: you said "count to 0".'),
        ("count to 10001", 'Reply 1: you said "count to 10001".'),
    ],
)
def test_count_to_n_only_for_n_from_1_to_10000(text: str, reply: str) -> None:
    chat = ChatRequest(model=MODEL_NAME, messages=[{"role": "user", "content": text}])

    assert script_reply(chat).text == reply


def test_tool_choice_none_keeps_the_model_from_calling_the_calculator() -> None:
    chat = ChatRequest(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": QUESTION}],
        tools=[CALCULATOR],
        tool_choice="none",
    )

    reply = script_reply(chat)

    assert reply.tool_call is None
    assert reply.text == f'Reply 1: you said "{QUESTION}".'


async def test_offline_settings_give_an_in_process_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    app = create_offline_model_app()
    settings = ModelSettings(None, None, MODEL_NAME, timeout_seconds=7.5)

    client = make_model_client(settings, offline_app=app)
    completion = await client.chat.completions.create(
        model=settings.model, messages=[user("hi")]
    )
    await client.close()

    assert str(client.base_url).rstrip("/") == OFFLINE_BASE_URL
    assert client.max_retries == 0
    assert client.timeout == 7.5
    assert completion.choices[0].message.content == 'Reply 1: you said "hi".'
    assert app.state.calls.count() == 1


async def test_a_base_url_gives_a_network_client_with_a_placeholder_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    settings = ModelSettings(None, "http://127.0.0.1:9/v1", "local-model", 12)

    client = make_model_client(settings)
    await client.close()

    assert str(client.base_url).rstrip("/") == "http://127.0.0.1:9/v1"
    assert client.api_key == PLACEHOLDER_API_KEY
    assert client.max_retries == 0
    assert client.timeout == 12


async def test_a_key_alone_gives_the_providers_default_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    settings = ModelSettings("sk-test", None, "gpt-4o-mini")

    client = make_model_client(settings)
    await client.close()

    assert str(client.base_url).rstrip("/") == PROVIDER_BASE_URL
    assert client.api_key == "sk-test"
    assert client.max_retries == 0
    assert client.timeout == 30.0


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ModelSettings(None, None, MODEL_NAME)),
        (
            {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""},
            ModelSettings(None, None, MODEL_NAME),
        ),
        ({"OPENAI_API_KEY": "sk-1"}, ModelSettings("sk-1", None, "gpt-4o-mini")),
        (
            {"OPENAI_BASE_URL": "http://127.0.0.1:8765/v1"},
            ModelSettings(None, "http://127.0.0.1:8765/v1", "gpt-4o-mini"),
        ),
        (
            {"OPENAI_API_KEY": "sk-1", "OPENAI_MODEL": "gpt-4.1"},
            ModelSettings("sk-1", None, "gpt-4.1"),
        ),
        ({"OPENAI_MODEL": "my-model"}, ModelSettings(None, None, "my-model")),
    ],
)
def test_settings_from_env(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: ModelSettings
) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert ModelSettings.from_env() == expected


def test_describe_names_the_endpoint_but_never_a_secret() -> None:
    offline = ModelSettings(None, None, MODEL_NAME)
    provider = ModelSettings("sk-secret", None, "gpt-4o-mini")
    endpoint = ModelSettings(
        "sk-secret", "https://me:hunter2@llm.example.com:8443/v1?key=abc", "m"
    )

    assert describe(offline) == "offline scripted model (in-process)"
    assert describe(provider) == f"OpenAI-compatible endpoint at {PROVIDER_BASE_URL}"
    assert describe(endpoint) == (
        "OpenAI-compatible endpoint at https://llm.example.com:8443/v1"
    )
    assert "sk-secret" not in repr(endpoint)


def test_the_server_refuses_a_host_that_is_not_loopback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--host", "0.0.0.0", "--port", "8765"])

    assert caught.value.code == 2
    assert "refusing to listen on '0.0.0.0'" in capsys.readouterr().err
    assert [is_loopback(h) for h in ("127.0.0.1", "::1", "localhost")] == [True] * 3
    assert [is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "example.com")] == [
        False
    ] * 3
