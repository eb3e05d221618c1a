"""What a run emits, in the order a client sees it.

Every event is stored before it is sent. ``StoredEvent.id`` is the position in the
session's stream: strictly increasing, and the number a client hands back as
``lastEventId`` / ``Last-Event-ID`` to resume.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from capstone.domain.errors import ErrorBody


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Usage(_Event):
    prompt_tokens: int = Field(0, alias="promptTokens")
    completion_tokens: int = Field(0, alias="completionTokens")
    model_calls: int = Field(0, alias="modelCalls")


class RunAccepted(_Event):
    type: Literal["run_accepted"] = "run_accepted"
    run_id: str = Field(alias="runId")
    message: str


class Token(_Event):
    type: Literal["token"] = "token"
    index: int
    text: str


class ToolCall(_Event):
    type: Literal["tool_call"] = "tool_call"
    call_id: str = Field(alias="callId")
    tool: str
    arguments: dict[str, Any]


class ToolResult(_Event):
    type: Literal["tool_result"] = "tool_result"
    call_id: str = Field(alias="callId")
    tool: str
    output: str | None = None
    error: str | None = None


class Completed(_Event):
    type: Literal["completed"] = "completed"
    answer: str
    usage: Usage


class Failed(_Event):
    type: Literal["failed"] = "failed"
    error: ErrorBody


class Cancelled(_Event):
    type: Literal["cancelled"] = "cancelled"
    reason: str = "cancelled by request"


AgentEvent = Annotated[
    RunAccepted | Token | ToolCall | ToolResult | Completed | Failed | Cancelled,
    Field(discriminator="type"),
]
agent_event_adapter: TypeAdapter[AgentEvent] = TypeAdapter(AgentEvent)

TERMINAL_TYPES = frozenset({"completed", "failed", "cancelled"})


def is_terminal(event: AgentEvent) -> bool:
    """After a terminal event, nothing more is stored for that execution."""
    return event.type in TERMINAL_TYPES


class StoredEvent(_Event):
    id: int = Field(description="position in the session stream, strictly increasing")
    tenant_id: str = Field(alias="tenantId")
    session_id: str = Field(alias="sessionId")
    execution_id: str = Field(alias="executionId")
    at: datetime
    event: AgentEvent
