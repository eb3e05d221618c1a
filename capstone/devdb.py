"""Where the capstone's Postgres comes from.

``DATABASE_URL`` wins when it is set. Otherwise the capstone runs an embedded
PostgreSQL 16 from the ``pgserver`` wheel, kept in ``.data/postgres`` at the top of
the repository, started on first use and reused by every later command until
``python -m capstone.devdb stop``.

The embedded server listens on a unix socket only. As root it runs under a system
user of its own (Postgres refuses to run as root). A previous process that died with
SIGKILL leaves nothing behind that blocks the next start: a half-made data folder is
rebuilt, and a stale ``postmaster.pid`` is ignored by Postgres itself.

    python -m capstone.devdb url [DBNAME]   print a connection URL
    python -m capstone.devdb status         say whether the server runs
    python -m capstone.devdb stop           stop the embedded server
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CAPSTONE_DATA_DIR", REPO_ROOT / ".data"))
PGDATA = DATA_DIR / "postgres"
READY_MARK = DATA_DIR / "postgres.ready"
LOCK_FILE = DATA_DIR / "postgres.lock"
DEFAULT_DATABASE = "agents"


class DatabaseUnavailable(RuntimeError):
    """The configured database cannot be reached or started."""


def database_url(dbname: str = DEFAULT_DATABASE) -> str:
    """Return the URL of ``dbname``, creating the database when it is missing.

    With ``DATABASE_URL`` set, that URL is returned unchanged when ``dbname`` is the
    default; another name gives the same server with that database.
    """
    configured = os.environ.get("DATABASE_URL")
    if configured:
        url = (
            configured
            if dbname == DEFAULT_DATABASE
            else with_database(configured, dbname)
        )
    else:
        url = with_database(embedded_server_url(), dbname)
    ensure_database(url)
    return url


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if the server does not have it yet."""
    import psycopg

    dbname = urlsplit(url).path.lstrip("/")
    admin_url = with_database(url, "postgres")
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
            if exists is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(f'CREATE DATABASE "{dbname}"')
    except psycopg.OperationalError as error:
        raise DatabaseUnavailable(
            f"cannot reach Postgres at {redact(url)}: {error}"
        ) from None


def drop_database(url: str) -> None:
    """Drop the database named in ``url``, ending its sessions first."""
    import psycopg

    dbname = urlsplit(url).path.lstrip("/")
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def redact(url: str) -> str:
    """The URL with any password replaced, fit for logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


@contextlib.contextmanager
def _data_lock() -> Iterator[None]:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as lock:
        # The kernel drops the lock when its holder dies, even by SIGKILL.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _import_pgserver() -> Any:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime folder; without XDG_RUNTIME_DIR
        # (CI, containers) it falls back to /tmp, which is what we want here.
        warnings.simplefilter("ignore")
        import pgserver
        import pgserver._commands

    return pgserver


def embedded_server_url() -> str:
    """Start the embedded server if it is not running and return its URL."""
    pgserver = _import_pgserver()
    with _data_lock():
        if PGDATA.exists() and not READY_MARK.exists():
            # A first start that never finished (killed during initdb, say): the
            # folder holds no data yet, so it is rebuilt rather than trusted.
            _stop_quietly()
            shutil.rmtree(PGDATA)
        _drop_stale_pid_file()
        try:
            server = pgserver.get_server(PGDATA, cleanup_mode=None)
        except Exception as error:
            log = PGDATA / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise DatabaseUnavailable(
                f"the embedded Postgres in {PGDATA} did not start: {error}\n{tail}"
            ) from None
        READY_MARK.touch()
        return str(server.get_uri())


def _drop_stale_pid_file() -> None:
    """Remove ``postmaster.pid`` when its process is gone or is not Postgres.

    Postgres handles a dead pid by itself; a pid reused by another program would
    make the wrapper believe a server runs where none does.
    """
    import psutil

    pid_file = PGDATA / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().split()[0])
        alive = psutil.Process(pid).name().startswith("postgres")
    except (ValueError, IndexError, psutil.Error):
        alive = False
    if not alive:
        pid_file.unlink(missing_ok=True)


def _pg_ctl(*args: str) -> subprocess.CompletedProcess[str]:
    bin_path = _import_pgserver()._commands.POSTGRES_BIN_PATH
    command = [str(bin_path / "pg_ctl"), "-D", str(PGDATA), *args]
    if os.geteuid() == 0:
        # The data folder belongs to the server's own system user.
        command = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(command)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False
    )


def _stop_quietly() -> None:
    if (PGDATA / "postmaster.pid").exists():
        _pg_ctl("-m", "fast", "-w", "stop")


def is_running() -> bool:
    if not (PGDATA / "PG_VERSION").exists():
        return False
    return _pg_ctl("status").returncode == 0


def stop() -> bool:
    """Stop the embedded server; return whether one was running."""
    with _data_lock():
        if not is_running():
            return False
        result = _pg_ctl("-m", "fast", "-w", "stop")
        if result.returncode != 0:
            raise DatabaseUnavailable(f"pg_ctl stop failed: {result.stderr.strip()}")
        return True


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "url"
    if command == "url":
        print(database_url(argv[1] if len(argv) > 1 else DEFAULT_DATABASE))
    elif command == "status":
        if os.environ.get("DATABASE_URL"):
            print("DATABASE_URL is set; the embedded server is not used")
        else:
            print(
                f"embedded Postgres in {PGDATA}: "
                f"{'running' if is_running() else 'stopped'}"
            )
    elif command == "stop":
        print("stopped" if stop() else "not running")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except DatabaseUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
