"""Apply and check the capstone's schema migrations (Alembic).

python -m capstone.migrate upgrade     apply every pending migration
python -m capstone.migrate check       exit 1 when the database is behind
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlalchemy_url(database_url: str) -> str:
    """The same URL for SQLAlchemy's psycopg 3 driver."""
    scheme, rest = database_url.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser treats '%' as interpolation; URLs may carry %-escapes.
    config.set_main_option(
        "sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%")
    )
    return config


# Any fixed number: every process that migrates takes this lock first, so runners
# and gateways starting together migrate one after another, not at once.
MIGRATION_LOCK = 7_220_001


def upgrade(database_url: str) -> None:
    """Bring both schemas up to date: DBOS's system tables and the capstone's."""
    import psycopg
    from dbos import DBOS

    with psycopg.connect(database_url, autocommit=True) as lock_conn:
        # Poll rather than block: a session blocked in pg_advisory_lock holds a
        # snapshot, and CREATE INDEX CONCURRENTLY in the migration we wait for
        # would wait for that snapshot in turn.
        while not lock_conn.execute(
            "SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK,)
        ).fetchone()[0]:  # type: ignore[index]
            time.sleep(0.2)
        try:
            DBOS.migrate(database_url)
            command.upgrade(alembic_config(database_url), "head")
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/unused"))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(database_url: str) -> str | None:
    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def main(argv: list[str]) -> int:
    from capstone.devdb import database_url

    url = database_url()
    if argv[:1] == ["upgrade"]:
        upgrade(url)
        print(f"schema at {current_revision(url)}")
        return 0
    if argv[:1] == ["check"]:
        current, head = current_revision(url), head_revision()
        print(f"schema at {current}, code expects {head}")
        return 0 if current == head else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
