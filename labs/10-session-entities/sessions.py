"""Runs and session memory in Postgres: what survives every runner restart.

A runner may cache a session's turns, but the rows here are the truth; losing the
cache loses nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from capstone.domain import execution_id_for

HISTORY_TURNS = 20


class RunConflict(Exception):
    """The runId was already used in this session for a different message."""


@dataclass(frozen=True)
class RunRecord:
    execution_id: str
    tenant_id: str
    session_id: str
    run_id: str
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None


@dataclass(frozen=True)
class Turn:
    user_message: str
    answer: str


def _digest(message: str) -> str:
    return hashlib.sha256(message.encode()).hexdigest()


async def create_run(
    pool: asyncpg.Pool, tenant_id: str, session_id: str, run_id: str, message: str
) -> tuple[RunRecord, bool]:
    """Record a run once; return it and whether this call created it."""
    execution_id = execution_id_for(tenant_id, session_id, run_id)
    async with pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO runs (execution_id, tenant_id, session_id, run_id, "
            "message_sha256) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (execution_id) DO NOTHING RETURNING true",
            execution_id,
            tenant_id,
            session_id,
            run_id,
            _digest(message),
        )
        row = await conn.fetchrow(
            "SELECT * FROM runs WHERE execution_id = $1", execution_id
        )
    assert row is not None
    if not inserted and row["message_sha256"] != _digest(message):
        raise RunConflict(
            f"runId {run_id!r} was already used in session {session_id!r} "
            "for a different message; use a new runId for a new message"
        )
    return _record(row), bool(inserted)


def _record(row: asyncpg.Record) -> RunRecord:
    return RunRecord(
        execution_id=row["execution_id"],
        tenant_id=row["tenant_id"],
        session_id=row["session_id"],
        run_id=row["run_id"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
        closed_by=row["closed_by"],
    )


async def get_run(pool: asyncpg.Pool, execution_id: str) -> RunRecord | None:
    row = await pool.fetchrow(
        "SELECT * FROM runs WHERE execution_id = $1", execution_id
    )
    return _record(row) if row is not None else None


async def load_history(
    pool: asyncpg.Pool, tenant_id: str, session_id: str, limit: int = HISTORY_TURNS
) -> list[Turn]:
    """The session's last finished turns, oldest first."""
    raise NotImplementedError("Task 3: read the session's memory from Postgres")


async def save_turn(
    pool: asyncpg.Pool, run: RunRecord, user_message: str, answer: str
) -> None:
    await pool.execute(
        "INSERT INTO session_turns (tenant_id, session_id, execution_id, "
        "user_message, answer) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (execution_id) DO NOTHING",
        run.tenant_id,
        run.session_id,
        run.execution_id,
        user_message,
        answer,
    )
