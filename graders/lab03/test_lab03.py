"""Lab 3: one process, one dependency graph.

Each check runs the reference capstone with one task's function taken from the
learner's file (see graders/conftest.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from capstone.runtime import assembly
from capstone.runtime.runner import RunnerAlreadyRunning, claim_runner_id
from capstone.runtime.settings import RuntimeSettings
from capstone.testing import FAST_SETTINGS, fresh_database
from course.check import check

STARTED = re.compile(r"^(started|released) (.+)$")


@pytest.fixture(scope="session")
def database_url() -> str:
    return fresh_database("agents_lab03")


class Stages(logging.Handler):
    """The parts the assembly reports, in the order it reports them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = STARTED.match(record.getMessage())
        if match:
            self.events.append((match[1], match[2]))

    def of(self, kind: str) -> list[str]:
        return [name for what, name in self.events if what == kind]


@pytest.fixture
def stages() -> Iterator[Stages]:
    handler = Stages()
    logger = logging.getLogger("capstone.runtime")
    previous = logger.level
    logger.setLevel(logging.INFO)
    # DBOS's logging set-up and teardown can leave other loggers disabled.
    logger.disabled = False
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def settings_for(database_url: str, runner_id: str) -> RuntimeSettings:
    return RuntimeSettings(
        database_url=database_url, RUNNER_ID=runner_id, **FAST_SETTINGS
    )


async def lock_is_free(database_url: str, runner_id: str) -> bool:
    try:
        conn = await claim_runner_id(database_url, runner_id, wait_seconds=0.5)
    except RunnerAlreadyRunning:
        return False
    await conn.close()
    return True


# Task 1 ----------------------------------------------------------------------


@pytest.mark.task(1)
def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """read_settings() with RUNNER_ID=agents-runtime-3 and WORKER_CONCURRENCY=7"""
    monkeypatch.setenv("RUNNER_ID", "agents-runtime-3")
    monkeypatch.setenv("WORKER_CONCURRENCY", "7")
    settings = assembly.read_settings()
    check(
        isinstance(settings, RuntimeSettings)
        and settings.runner_id == "agents-runtime-3"
        and settings.worker_concurrency == 7,
        called="read_settings() with RUNNER_ID=agents-runtime-3, WORKER_CONCURRENCY=7",
        got=repr(settings)[:200],
        expected="RuntimeSettings with those two values",
    )


def startup_error(monkeypatch: pytest.MonkeyPatch, **environ: str) -> str:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    try:
        settings = assembly.read_settings()
    except assembly.StartupError as error:
        return str(error)
    return f"no error; returned {settings!r}"[:200]


@pytest.mark.task(1)
def test_an_invalid_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """read_settings() with WORKER_CONCURRENCY=0"""
    message = startup_error(monkeypatch, WORKER_CONCURRENCY="0")
    check(
        "WORKER_CONCURRENCY" in message,
        called="read_settings() with WORKER_CONCURRENCY=0",
        got=message,
        expected="a StartupError naming WORKER_CONCURRENCY",
    )


@pytest.mark.task(1)
def test_a_missing_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """read_settings() with APP_ENV=production and no DATABASE_URL"""
    message = startup_error(monkeypatch, APP_ENV="production")
    check(
        "DATABASE_URL" in message,
        called="read_settings() with APP_ENV=production and no DATABASE_URL",
        got=message,
        expected="a StartupError naming DATABASE_URL",
    )


# Task 2 ----------------------------------------------------------------------


@pytest.mark.task(2)
async def test_start_in_order_release_in_reverse(
    database_url: str, stages: Stages
) -> None:
    """running_runner(settings): start, then leave the block"""
    runner_id = "lab03-order-0"
    async with assembly.running_runner(settings_for(database_url, runner_id)) as runner:
        pool = runner.pool
        held = not await lock_is_free(database_url, runner_id)
    started, released = stages.of("started"), stages.of("released")
    check(
        started == list(assembly.STAGES),
        called="running_runner(settings)",
        got=f"started {started}",
        expected=f"started {list(assembly.STAGES)}",
    )
    check(
        released == list(reversed(assembly.STAGES)),
        called="leaving running_runner(settings)",
        got=f"released {released}",
        expected="every part released, in the reverse order",
    )
    free = await lock_is_free(database_url, runner_id)
    check(
        held and free and pool.is_closing(),
        called="the runner id's lock and the pool, during and after the block",
        got=f"lock held while running: {held}; free after: {free}; "
        f"pool closed: {pool.is_closing()}",
        expected="the lock held while running and free after; the pool closed",
    )


@pytest.mark.task(2)
async def test_a_failed_start_releases_what_started(
    database_url: str, stages: Stages, monkeypatch: pytest.MonkeyPatch
) -> None:
    """running_runner(settings) when the queues cannot be registered"""

    async def refuse(settings: RuntimeSettings) -> None:
        raise RuntimeError("the queue was refused")

    monkeypatch.setattr(assembly, "register_queues", refuse)
    runner_id = "lab03-fail-0"
    failed = False
    try:
        async with assembly.running_runner(settings_for(database_url, runner_id)):
            pass
    except RuntimeError:
        failed = True
    started, released = stages.of("started"), stages.of("released")
    check(
        failed and started and released == list(reversed(started)),
        called="running_runner(settings) with queue registration failing",
        got=f"error raised: {failed}; started {started}; released {released}",
        expected="the error raised, and every part that started released in reverse",
    )
    check(
        await lock_is_free(database_url, runner_id),
        called="claiming the runner id after the failed start",
        got="the lock is still held",
        expected="the lock free again: a retry of the start can take it",
    )
