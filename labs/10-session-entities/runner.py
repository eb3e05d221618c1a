"""A runner process: DBOS launched with a stable executor id, taking work from its
queues, with the health endpoints Kubernetes probes.

Start order: settings, database (and migrations), connection pool, event store,
model client, DBOS, queues, heartbeat, HTTP. Shutdown runs it backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import asyncpg
import psycopg
import sqlalchemy
import sqlalchemy.engine
import sqlalchemy.event
from dbos import DBOS, DBOSConfig
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from capstone import devdb, migrate
from capstone.eventstore import EventStore
from capstone.model.client import ModelSettings, describe, make_model_client
from capstone.model.offline import create_offline_model_app
from capstone.runtime import workflow
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
    identity: asyncpg.Connection
    launched: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

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


async def start_runner(settings: RuntimeSettings) -> Runner:
    """Bring a runner up inside the running event loop and return it."""
    database_url = settings.database_url or devdb.database_url()
    await asyncio.to_thread(migrate.upgrade, database_url)
    identity = await claim_runner_id(database_url, settings.runner_id)

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    events = EventStore(pool)
    model_settings = ModelSettings.from_env()
    offline_model = create_offline_model_app() if model_settings.offline else None
    workflow.install_runtime(
        workflow.Runtime(
            settings=settings,
            pool=pool,
            events=events,
            model=make_model_client(model_settings, offline_model),
            model_name=model_settings.model,
            offline_model=offline_model,
        )
    )

    # Launched from the event loop's own thread, DBOS runs async workflows on this
    # loop, where the asyncpg pool lives.
    DBOS(config=dbos_config(settings, database_url))
    DBOS.listen_queues(settings.runner_queues)
    DBOS.launch()
    await register_queues(settings)

    runner = Runner(settings, database_url, pool, events, identity, launched=True)
    runner._tasks.append(asyncio.create_task(runner.heartbeat()))
    log.info(
        "runner %s up (version %s, queues %s, model: %s)",
        settings.runner_id,
        APPLICATION_VERSION,
        ",".join(settings.runner_queues),
        describe(model_settings),
    )
    return runner


async def stop_runner(runner: Runner) -> None:
    for task in runner._tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    runner.launched = False
    await asyncio.to_thread(DBOS.destroy, workflow_completion_timeout_sec=5)
    workflow.install_runtime(None)
    await runner.events.close()
    await runner.pool.close()
    await runner.identity.close()


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
