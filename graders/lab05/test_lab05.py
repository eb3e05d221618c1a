"""Lab 5: the local lab ladder.

Tasks 1 and 2 read the learner's docker-compose.yml as data (no Docker needed);
task 3 runs the learner's harness function inside the reference capstone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from capstone import devdb, testing
from course.check import check


@pytest.fixture
def compose(lab_dir: Path) -> dict[str, Any]:
    path = lab_dir / "docker-compose.yml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0]
        pytest.fail(f"docker-compose.yml cannot be read as YAML: {reason}")
    check(
        isinstance(data, dict) and isinstance(data.get("services"), dict),
        called="reading docker-compose.yml",
        got=type(data).__name__,
        expected="a mapping with a services section",
    )
    return dict(data)


def not_started(lab_dir: Path, task: int) -> None:
    """Fail with the skeleton's own line while the task's placeholder is still there."""
    text = (lab_dir / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if line.strip().startswith(f"# Task {task}:"):
            check(
                False,
                called="reading docker-compose.yml",
                got=f"the placeholder is still there: {line.strip()}",
                expected="the task's settings in its place",
            )


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    found = compose["services"].get(name)
    check(
        isinstance(found, dict),
        called=f"services.{name} in docker-compose.yml",
        got=found,
        expected=f"a service named {name}",
    )
    return dict(found)


def environment(definition: dict[str, Any]) -> dict[str, str]:
    raw = definition.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw if "=" in item)
    return {str(key): str(value) for key, value in raw.items()}


# Task 1 ----------------------------------------------------------------------


@pytest.mark.task(1)
def test_postgres_reports_its_health(compose: dict[str, Any], lab_dir: Path) -> None:
    """services.postgres.healthcheck"""
    not_started(lab_dir, 1)
    postgres = service(compose, "postgres")
    check(
        str(postgres.get("image", "")).startswith("postgres:16"),
        called="services.postgres.image",
        got=postgres.get("image"),
        expected="postgres:16 (the version Cloud SQL runs in this course)",
    )
    health = postgres.get("healthcheck") or {}
    command = (
        " ".join(map(str, health.get("test", [])))
        if isinstance(health.get("test"), list)
        else str(health.get("test", ""))
    )
    check(
        "pg_isready" in command
        and ("-h 127.0.0.1" in command or "-h localhost" in command),
        called="services.postgres.healthcheck.test",
        got=command or "no healthcheck",
        expected="pg_isready over TCP (-h 127.0.0.1), not the socket",
    )
    check(
        health.get("interval") and health.get("retries"),
        called="services.postgres.healthcheck",
        got={key: health.get(key) for key in ("interval", "retries")},
        expected="an interval and a number of retries",
    )


@pytest.mark.task(1)
def test_postgres_keeps_its_data(compose: dict[str, Any]) -> None:
    """services.postgres.volumes and the top-level volumes"""
    postgres = service(compose, "postgres")
    mounts = [str(v) for v in postgres.get("volumes") or []]
    named = [m.split(":")[0] for m in mounts if m.endswith(":/var/lib/postgresql/data")]
    check(
        named and named[0] in (compose.get("volumes") or {}),
        called="services.postgres.volumes and volumes",
        got=mounts or "no volume",
        expected="a named volume, declared under volumes, on /var/lib/postgresql/data",
    )


# Task 2 ----------------------------------------------------------------------


@pytest.mark.task(2)
def test_runtime_waits_for_a_healthy_database(
    compose: dict[str, Any], lab_dir: Path
) -> None:
    """services.runtime.depends_on"""
    not_started(lab_dir, 2)
    runtime = service(compose, "runtime")
    depends = runtime.get("depends_on") or {}
    condition = (
        depends.get("postgres", {}).get("condition")
        if isinstance(depends, dict)
        else None
    )
    check(
        condition == "service_healthy",
        called="services.runtime.depends_on",
        got=depends or "nothing",
        expected="postgres with condition service_healthy",
    )


@pytest.mark.task(2)
def test_runtime_is_configured_and_reachable(compose: dict[str, Any]) -> None:
    """services.runtime.environment and ports"""
    runtime = service(compose, "runtime")
    env = environment(runtime)
    url = env.get("DATABASE_URL", "")
    check(
        "@postgres:" in url or "@postgres/" in url,
        called="services.runtime.environment.DATABASE_URL",
        got=url or "not set",
        expected="a URL whose host is the postgres service",
    )
    check(
        env.get("POD_NAME") and env.get("RUNTIME_HOST") == "0.0.0.0",
        called="services.runtime.environment",
        got={key: env.get(key) for key in ("POD_NAME", "RUNTIME_HOST")},
        expected="a fixed POD_NAME (the runner id) and RUNTIME_HOST 0.0.0.0",
        hint="inside a container, 127.0.0.1 is reachable only from that container",
    )
    port = env.get("RUNTIME_PORT", "8081")
    published = [str(p) for p in runtime.get("ports") or []]
    check(
        any(p.endswith(f":{port}") for p in published),
        called="services.runtime.ports",
        got=published or "none",
        expected=f"the runtime's port {port} published",
    )


# Task 3 ----------------------------------------------------------------------


@pytest.mark.task(3)
async def test_every_session_starts_empty() -> None:
    """fresh_database("agents_lab05") after a run left a table there"""
    url = devdb.with_database(devdb.database_url(), "agents_lab05")
    devdb.ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS left_over (id int)")
    finally:
        await conn.close()

    fresh = testing.fresh_database("agents_lab05")
    conn = await asyncpg.connect(fresh)
    try:
        name = await conn.fetchval("SELECT current_database()")
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
    finally:
        await conn.close()
    check(
        name == "agents_lab05" and tables == 0,
        called='fresh_database("agents_lab05") after a run left a table there',
        got=f"database {name!r} with {tables} table(s)",
        expected="the database agents_lab05, empty",
    )
