"""Logging for every capstone process: JSON in production, one readable line locally.

``LOG_FORMAT=json`` (set in the Kubernetes manifests) gives one JSON object per line
with the context fields (tenant, session, run, execution, round, attempt) as keys.
Anything else gives ``time level logger message key=value...`` for a terminal.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime

CONTEXT_FIELDS = (
    "service",
    "runner_id",
    "tenant_id",
    "session_id",
    "run_id",
    "execution_id",
    "round",
    "attempt",
)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        fields = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if hasattr(record, name)
        )
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line += f"  [{fields}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _ServiceFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True


def configure_logging(service: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    json_format = os.environ.get("LOG_FORMAT", "text").lower() == "json"
    handler.setFormatter(_JsonFormatter() if json_format else _TextFormatter())
    handler.addFilter(_ServiceFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    for noisy in ("uvicorn.access", "httpx", "httpx2", "openai", "dbos", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
