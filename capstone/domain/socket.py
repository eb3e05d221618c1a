"""Frames on ``WS /ws/{sessionId}``.

The client sends ``Ask`` and ``Cancel``; the server sends stored events, the
acceptance of an Ask, the outcome of a Cancel, and errors. A frame the server
cannot read gets an error frame back and the connection stays open.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from capstone.domain.errors import ErrorBody
from capstone.domain.events import StoredEvent
from capstone.domain.ids import ExecutionId, Message, RunId


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Ask(_Frame):
    type: Literal["ask"] = "ask"
    run_id: RunId = Field(alias="runId")
    message: Message


class Cancel(_Frame):
    type: Literal["cancel"] = "cancel"
    execution_id: ExecutionId = Field(alias="executionId")


ClientMessage = Annotated[Ask | Cancel, Field(discriminator="type")]
_client_message_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Parse one inbound frame; raises ``pydantic.ValidationError`` when malformed."""
    return _client_message_adapter.validate_json(raw)


class ServerEvent(_Frame):
    type: Literal["event"] = "event"
    event: StoredEvent


class ServerAccepted(_Frame):
    type: Literal["accepted"] = "accepted"
    execution_id: str = Field(alias="executionId")
    run_id: str = Field(alias="runId")


class ServerCancelled(_Frame):
    """The answer to a Cancel: the run's status once the cancel is done."""

    type: Literal["cancel_result"] = "cancel_result"
    execution_id: str = Field(alias="executionId")
    status: str


class ServerError(_Frame):
    type: Literal["error"] = "error"
    error: ErrorBody
