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
    raise NotImplementedError("Task 1: read the settings first, and name every bad one")


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
    raise NotImplementedError("Task 2: start the parts in order and register each release")


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
