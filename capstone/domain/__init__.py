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
    MAX_EVENT_ID,
    MAX_MESSAGE_CHARS,
    ExecutionId,
    Message,
    RunId,
    SessionId,
    TenantId,
    execution_id_for,
    is_valid_id,
    parse_event_id,
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
    ServerCancelled,
    ServerError,
    ServerEvent,
    parse_client_message,
)

__all__ = [
    "MAX_EVENT_ID",
    "MAX_MESSAGE_CHARS",
    "AgentEvent",
    "Ask",
    "Cancel",
    "Cancelled",
    "ClientMessage",
    "Completed",
    "ErrorBody",
    "ErrorResponse",
    "ExecutionId",
    "Failed",
    "Message",
    "RunAccepted",
    "RunId",
    "RunRequest",
    "RunStarted",
    "RunStatus",
    "RunView",
    "ServerAccepted",
    "ServerCancelled",
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
    "is_valid_id",
    "parse_event_id",
    "is_terminal",
    "parse_client_message",
]
