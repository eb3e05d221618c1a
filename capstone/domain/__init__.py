"""The typed contract every part of the capstone shares.

The gateway, the runtime, the event store, the edge and the tests all import these
models, so a field renamed here is renamed everywhere at once.
"""

from capstone.domain.errors import ErrorBody, ErrorResponse
from capstone.domain.events import (
    AgentEvent,
    Cancelled,
    Completed,
    Failed,
    RunAccepted,
    StoredEvent,
    Token,
    ToolCall,
    ToolResult,
    Usage,
    is_terminal,
)
from capstone.domain.ids import (
    MAX_MESSAGE_CHARS,
    RunId,
    SessionId,
    TenantId,
    execution_id_for,
)
from capstone.domain.runs import (
    RunRequest,
    RunStarted,
    RunStatus,
    RunView,
)
from capstone.domain.socket import (
    Ask,
    Cancel,
    ClientMessage,
    ServerAccepted,
    ServerError,
    ServerEvent,
    parse_client_message,
)

__all__ = [
    "MAX_MESSAGE_CHARS",
    "AgentEvent",
    "Ask",
    "Cancel",
    "Cancelled",
    "ClientMessage",
    "Completed",
    "ErrorBody",
    "ErrorResponse",
    "Failed",
    "RunAccepted",
    "RunId",
    "RunRequest",
    "RunStarted",
    "RunStatus",
    "RunView",
    "ServerAccepted",
    "ServerError",
    "ServerEvent",
    "SessionId",
    "StoredEvent",
    "TenantId",
    "Token",
    "ToolCall",
    "ToolResult",
    "Usage",
    "execution_id_for",
    "is_terminal",
    "parse_client_message",
]
