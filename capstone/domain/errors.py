"""The one error shape every HTTP reply and WebSocket frame uses."""

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(description="stable, machine-readable reason, e.g. 'not_found'")
    message: str = Field(description="what went wrong, in words a person can act on")
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
