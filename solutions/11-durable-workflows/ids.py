"""Identifiers and the limits on what a client may send."""

import hashlib
import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

# Letters, digits, '_', '-' and '.', starting with a letter or digit: safe in URLs,
# log fields, Postgres text and DBOS workflow IDs without escaping.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
ID_RULE = "letters, digits, '_', '-' and '.', starting with a letter or digit"

SessionId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)
]
RunId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)
]
TenantId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)
]

ExecutionId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)
]

MAX_MESSAGE_CHARS = 8_000
MAX_ID_CHARS = 64
# Event ids are Postgres bigints; a cursor past this is not an id of ours.
MAX_EVENT_ID = 2**63 - 1
_EVENT_ID = re.compile(r"[0-9]{1,19}")


def _readable_text(message: str) -> str:
    if not message.strip():
        raise ValueError("the message is blank")
    if "\x00" in message:
        raise ValueError("the message contains a NUL character")
    return message


Message = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS),
    AfterValidator(_readable_text),
]


def parse_event_id(value: str) -> int:
    """A ``lastEventId`` / ``Last-Event-ID`` cursor; ValueError if it is not one."""
    text = value.strip()
    if not _EVENT_ID.fullmatch(text) or int(text) > MAX_EVENT_ID:
        raise ValueError(f"an event id is a whole number from 0 to {MAX_EVENT_ID}")
    return int(text)


def is_valid_id(value: str, max_length: int = MAX_ID_CHARS) -> bool:
    """Whether ``value`` is a well-formed session or tenant id."""
    return len(value) <= max_length and re.fullmatch(ID_PATTERN, value) is not None


def execution_id_for(tenant_id: str, session_id: str, run_id: str) -> str:
    """The execution (DBOS workflow) ID of a run.

    A pure function of what the client sent: the same tenant, session and runId
    always name the same execution, so a retried request finds the run it already
    started instead of starting another. Nothing random, no clock, no hostname.
    """
    key = f"{tenant_id}\x1f{session_id}\x1f{run_id}".encode()
    return "run-" + hashlib.sha256(key).hexdigest()[:32]
