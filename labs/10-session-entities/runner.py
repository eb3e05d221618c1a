"""A runner's parts: DBOS configured with a stable executor id and a pinned version,
its queues, its heartbeat and readiness, the one-process-per-id lock, and the health
endpoints Kubernetes probes. ``capstone/runtime/assembly.py`` puts them together.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg
import psycopg
import sqlalchemy
import sqlalchemy.engine
import sqlalchemy.event
from dbos import DBOS, DBOSConfig
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from capstone import migrate
from capstone.eventstore import EventStore
from capstone.runtime.settings import (
    AGENT_QUEUE,
    APPLICATION_VERSION,
    RuntimeSettings,
)

log = logging.getLogger("capstone.runtime")


def _server_unreachable(context: sqlalchemy.engine.ExceptionContext) -> None:
    """Mark "the server is not there at all" as a lost connection.

    DBOS pauses a workflow and retries when its system database connection fails,
    recognising failures by their message. A unix socket whose server is down
    fails with "connection is bad: ... No such file or directory", which it does
    not recognise, so the workflow dies instead of waiting. Flagging the error as
    a disconnect puts it on DBOS's retry path. Remove this once DBOS treats that
    message as a connection failure.
    """
    error = context.original_exception
    if (
        context.connection is None
        and isinstance(error, psycopg.OperationalError)
        and ("No such file or directory" in str(error) or "refused" in str(error))
    ):
        context.is_disconnect = True


sqlalchemy.event.listen(sqlalchemy.engine.Engine, "handle_error", _server_unreachable)


def dbos_config(settings: RuntimeSettings, database_url: str) -> DBOSConfig:
    """How DBOS runs in this process: which database, which version, which id."""
    return {
        "name": "agents",
        "system_database_url": database_url,
        # Pinned: a runner recovers only workflows stamped with its own version.
        "application_version": APPLICATION_VERSION,
        # The pod name, never random: after a restart the runner finds its own
        # unfinished workflows by this id and resumes them.
        "executor_id": settings.runner_id,
        "log_level": "WARNING",
        "notification_listener_polling_interval_sec": 0.1,
    }


async def register_queues(settings: RuntimeSettings) -> None:
    """Declare the run queue: one run at a time per session, on any runner."""
    raise NotImplementedError("Task 2: let each session run one run at a time, on any runner")


@dataclass
class Runner:
    settings: RuntimeSettings
    database_url: str
    pool: asyncpg.Pool
    events: EventStore
    launched: bool = False

    async def heartbeat(self) -> None:
        """Tell the database this runner is alive and which queues it serves."""
        while True:
            try:
                await self.pool.execute(
                    "INSERT INTO runners (runner_id, application_version, queues) "
                    "VALUES ($1, $2, $3) ON CONFLICT (runner_id) DO UPDATE SET "
                    "application_version = $2, queues = $3, last_seen_at = now()",
                    self.settings.runner_id,
                    APPLICATION_VERSION,
                    self.settings.runner_queues,
                )
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("heartbeat failed: %s", error)
            await asyncio.sleep(self.settings.heartbeat_seconds)

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        try:
            await self.pool.fetchval("SELECT 1")
            checks["database"] = "ok"
        except (OSError, asyncpg.PostgresError) as error:
            checks["database"] = f"unreachable: {error}"
        try:
            current = await asyncio.to_thread(
                migrate.current_revision, self.database_url
            )
            head = migrate.head_revision()
            checks["migrations"] = (
                "ok" if current == head else f"at {current}, need {head}"
            )
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            checks["migrations"] = f"unknown: {error}"
        checks["runner"] = "launched" if self.launched else "not launched"
        ready = all(value in ("ok", "launched") for value in checks.values())
        return ready, checks


class RunnerAlreadyRunning(RuntimeError):
    """Another live process holds this runner id."""


async def claim_runner_id(
    database_url: str, runner_id: str, wait_seconds: float = 5.0
) -> asyncpg.Connection:
    """Hold a session lock named after the runner id for the process's lifetime.

    Two processes with one executor id would each recover the other's workflows.
    In Kubernetes the StatefulSet rules that out; locally this lock does. A process
    that dies, even by SIGKILL, loses its connection and with it the lock, so a
    restart with the same id gets it back at once.
    """
    conn = await asyncpg.connect(database_url)
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        claimed = await conn.fetchval(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            f"runner:{runner_id}",
        )
        if claimed:
            return conn
        if asyncio.get_running_loop().time() >= deadline:
            await conn.close()
            raise RunnerAlreadyRunning(
                f"runner id {runner_id!r} is already in use by a live process on "
                "this database; give this runner another POD_NAME / RUNNER_ID"
            )
        await asyncio.sleep(0.2)


def health_app(runner: Runner) -> FastAPI:
    app = FastAPI(title="agent runner", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "runner": runner.settings.runner_id}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready, checks = await runner.readiness()
        return JSONResponse({"ready": ready, "checks": checks}, 200 if ready else 503)

    return app
