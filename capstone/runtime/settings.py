"""Runtime settings, read once from the environment at start-up."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The version DBOS stamps on every workflow this code starts. A runner recovers only
# workflows of its own version, so it changes only when a release cannot finish
# the workflows an older release started. Never derive it from the code's hash.
APPLICATION_VERSION = "agents-2026.12"

AGENT_QUEUE = "agent-runs"
AGENT_WORKFLOW = "agent_run"


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Literal["local", "production"] = Field(
        "local",
        validation_alias=AliasChoices("APP_ENV"),
        description="production makes DATABASE_URL required",
    )
    database_url: str | None = Field(
        None, description="Postgres URL; unset means the embedded server (local only)"
    )
    runner_id: str = Field(
        "runner-0",
        validation_alias=AliasChoices("POD_NAME", "RUNNER_ID"),
        description="DBOS executor id: the pod name, stable across restarts",
        pattern=r"^[a-z0-9][a-z0-9.\-]{0,62}$",
    )
    runner_queues: list[str] = Field(
        default_factory=lambda: [AGENT_QUEUE],
        description="queues this runner takes work from (its runner pool)",
    )
    queue_poll_seconds: float = Field(0.2, gt=0, le=10)
    worker_concurrency: int = Field(20, ge=1, le=500)

    model_max_attempts: int = Field(4, ge=1, le=10)
    model_retry_seconds: float = Field(1.0, gt=0, le=60)
    model_backoff_rate: float = Field(2.0, ge=1, le=10)
    max_tool_rounds: int = Field(4, ge=1, le=16)
    tool_timeout_seconds: float = Field(5.0, gt=0, le=120)

    http_host: str = Field("127.0.0.1", validation_alias=AliasChoices("RUNTIME_HOST"))
    http_port: int = Field(8081, validation_alias=AliasChoices("RUNTIME_PORT"))
    heartbeat_seconds: float = Field(5.0, gt=0, le=60)

    @model_validator(mode="after")
    def database_in_production(self) -> Self:
        # Without it, a pod would start a private embedded Postgres in its own
        # container and lose every run at its next restart.
        if self.environment == "production" and not self.database_url:
            raise ValueError("DATABASE_URL is required when APP_ENV=production")
        return self
