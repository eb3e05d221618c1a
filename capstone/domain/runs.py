"""Starting and polling runs."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from capstone.domain.errors import ErrorBody
from capstone.domain.events import Usage
from capstone.domain.ids import Message, RunId


class _Wire(BaseModel):
    # The JSON contract is camelCase, as in the public API.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RunRequest(_Wire):
    run_id: RunId = Field(alias="runId")
    message: Message


class RunStarted(_Wire):
    execution_id: str = Field(alias="executionId")
    session_id: str = Field(alias="sessionId")
    run_id: str = Field(alias="runId")


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class RunView(_Wire):
    execution_id: str = Field(alias="executionId")
    tenant_id: str = Field(alias="tenantId")
    session_id: str = Field(alias="sessionId")
    run_id: str = Field(alias="runId")
    status: RunStatus
    answer: str | None = None
    usage: Usage | None = None
    error: ErrorBody | None = None
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")
