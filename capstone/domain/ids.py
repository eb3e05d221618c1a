"""Identifiers and the limits on what a client may send."""

import hashlib
from typing import Annotated

from pydantic import StringConstraints

# Letters, digits, '_', '-' and '.', starting with a letter or digit: safe in URLs,
# log fields, Postgres text and DBOS workflow IDs without escaping.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"

SessionId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=_ID_PATTERN)
]
RunId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=_ID_PATTERN)
]
TenantId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=_ID_PATTERN)
]

MAX_MESSAGE_CHARS = 8_000


def execution_id_for(tenant_id: str, session_id: str, run_id: str) -> str:
    """The execution (DBOS workflow) ID of a run.

    A pure function of what the client sent: the same tenant, session and runId
    always name the same execution, so a retried request finds the run it already
    started instead of starting another. Nothing random, no clock, no hostname.
    """
    key = f"{tenant_id}\x1f{session_id}\x1f{run_id}".encode()
    return "run-" + hashlib.sha256(key).hexdigest()[:32]
