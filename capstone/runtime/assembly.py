"""The runner, assembled in one place: one process, one dependency graph.

    settings -> database -> runner id -> pool -> event store -> model client
             -> workflow engine -> queues -> heartbeat          (then HTTP)

Python has no type-level graph of services, so the graph is the order of the lines
in ``assemble``. Each part registers its release on one ``AsyncExitStack`` as soon as
it has started, and the stack runs the releases last-in, first-out: at shutdown, and
also when start-up fails halfway, so a failed start leaves no pool open and no lock
held. Each start and release is logged (``started pool``, ``released pool``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
from dbos import DBOS
from pydantic import ValidationError

from capstone import devdb, migrate
from capstone.eventstore import EventStore
from capstone.model.client import ModelSettings, describe, make_model_client
from capstone.model.offline import create_offline_model_app
from capstone.runtime import workflow
from capstone.runtime.runner import (
    Runner,
    claim_runner_id,
    dbos_config,
    register_queues,
)
from capstone.runtime.settings import APPLICATION_VERSION, RuntimeSettings

log = logging.getLogger("capstone.runtime")

STAGES = (
    "database",
    "runner id",
    "pool",
    "event store",
    "model client",
    "workflow engine",
    "queues",
    "heartbeat",
)


class StartupError(RuntimeError):
    """The runner cannot start; the message says why in one line."""


def _setting_name(location: tuple[Any, ...]) -> str:
    """The environment variable a settings error is about."""
    if not location:
        return "settings"
    name = str(location[0])
    return name if name.isupper() else name.upper()


def read_settings() -> RuntimeSettings:
    """The runner's settings from the environment, read once, before anything opens.

    Raises StartupError naming every missing or invalid setting.
    """
    # lab 3.1 begin
    try:
        return RuntimeSettings()
    except ValidationError as error:
        problems = [
            f"{_setting_name(tuple(problem['loc']))}: {problem['msg']}"
            for problem in error.errors()
        ]
        raise StartupError("invalid settings: " + "; ".join(problems)) from None
    # lab 3.1 end


async def part_started(
    started: contextlib.AsyncExitStack,
    name: str,
    release: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """Record that a part is up, and push its release onto the stack."""
    log.info("started %s", name)

    async def release_part() -> None:
        if release is not None:
            await release()
        log.info("released %s", name)

    started.push_async_callback(release_part)


async def stop_workflow_engine() -> None:
    # DBOS.destroy waits for running workflows, which need this event loop: it
    # must wait on a thread of its own.
    await asyncio.to_thread(DBOS.destroy, workflow_completion_timeout_sec=5)
    workflow.install_runtime(None)
    # DBOS made its own thread pool the loop's default executor and has now shut it
    # down; without a new one, every later asyncio.to_thread on this loop fails.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())


async def assemble(
    settings: RuntimeSettings, started: contextlib.AsyncExitStack
) -> Runner:
    """Start the runner's parts in order; each registers its release on ``started``."""
    # lab 3.2 begin
    database_url = settings.database_url or devdb.database_url()
    await asyncio.to_thread(migrate.upgrade, database_url)
    await part_started(started, "database")

    identity = await claim_runner_id(database_url, settings.runner_id)
    await part_started(started, "runner id", identity.close)

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    await part_started(started, "pool", pool.close)

    events = EventStore(pool)
    await part_started(started, "event store", events.close)

    model_settings = ModelSettings.from_env()
    offline_model = create_offline_model_app() if model_settings.offline else None
    model = make_model_client(model_settings, offline_model)
    await part_started(started, "model client", model.close)

    workflow.install_runtime(
        workflow.Runtime(
            settings=settings,
            pool=pool,
            events=events,
            model=model,
            model_name=model_settings.model,
            offline_model=offline_model,
        )
    )
    # Launched from the event loop's own thread, DBOS runs async workflows on this
    # loop, where the asyncpg pool lives.
    DBOS(config=dbos_config(settings, database_url))
    DBOS.listen_queues(settings.runner_queues)
    DBOS.launch()
    await part_started(started, "workflow engine", stop_workflow_engine)

    await register_queues(settings)
    await part_started(started, "queues")

    runner = Runner(settings, database_url, pool, events, launched=True)
    heartbeat = asyncio.create_task(runner.heartbeat())

    async def stop_heartbeat() -> None:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat

    await part_started(started, "heartbeat", stop_heartbeat)
    log.info(
        "runner %s up (version %s, queues %s, model: %s)",
        settings.runner_id,
        APPLICATION_VERSION,
        ",".join(settings.runner_queues),
        describe(model_settings),
    )
    return runner
    # lab 3.2 end


@contextlib.asynccontextmanager
async def running_runner(settings: RuntimeSettings) -> AsyncIterator[Runner]:
    """A runner for the length of the block, released in reverse when it ends."""
    async with contextlib.AsyncExitStack() as started:
        runner = await assemble(settings, started)
        try:
            yield runner
        finally:
            # Not ready any more before anything is released.
            runner.launched = False
