"""The embedded Postgres: started once, reused, stopped cleanly, and never left
stuck by a process that died with SIGKILL.

Each test uses a data folder of its own (``CAPSTONE_DATA_DIR``) and drives
``python -m capstone.devdb`` in subprocesses, as the Makefile does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent


def devdb(
    data_dir: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capstone.devdb", *args],
        cwd=REPO,
        env={**os.environ, "CAPSTONE_DATA_DIR": str(data_dir), "DATABASE_URL": ""},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def postmaster(data_dir: Path) -> psutil.Process:
    pid = int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])
    return psutil.Process(pid)


def answers(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


@pytest.fixture
def data_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "data"
    # As root the server runs as its own system user, which must reach the folder.
    tmp_path.chmod(0o755)
    yield path
    if (path / "postgres" / "postmaster.pid").exists():
        devdb(path, "stop")


def test_started_once_then_reused_then_stopped(data_dir: Path) -> None:
    first = devdb(data_dir, "url")
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip()
    assert answers(url)
    pid = postmaster(data_dir).pid

    again = devdb(data_dir, "url")
    assert again.stdout.strip() == url
    assert postmaster(data_dir).pid == pid, "a second server was started"

    assert devdb(data_dir, "stop").stdout.strip() == "stopped"
    assert (
        not psutil.pid_exists(pid)
        or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    )
    assert "stopped" in devdb(data_dir, "status").stdout
    assert devdb(data_dir, "stop").stdout.strip() == "not running"


def test_server_killed_with_sigkill_starts_again(data_dir: Path) -> None:
    url = devdb(data_dir, "url").stdout.strip()
    server = postmaster(data_dir)
    for process in [server, *server.children(recursive=True)]:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs([server], timeout=10)

    restarted = devdb(data_dir, "url")
    assert restarted.returncode == 0, restarted.stderr
    assert answers(restarted.stdout.strip())
    assert restarted.stdout.strip() == url


def test_client_killed_during_first_start_leaves_nothing_stuck(data_dir: Path) -> None:
    client = subprocess.Popen(
        [sys.executable, "-m", "capstone.devdb", "url"],
        cwd=REPO,
        env={**os.environ, "CAPSTONE_DATA_DIR": str(data_dir), "DATABASE_URL": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill it as soon as it has begun making the data folder.
    deadline = time.monotonic() + 30
    while not (data_dir / "postgres").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    client.send_signal(signal.SIGKILL)
    client.wait(10)

    started = time.monotonic()
    result = devdb(data_dir, "url")
    assert result.returncode == 0, result.stderr
    assert answers(result.stdout.strip())
    assert time.monotonic() - started < 30


def test_half_made_data_folder_is_rebuilt(data_dir: Path) -> None:
    (data_dir / "postgres").mkdir(parents=True)
    (data_dir / "postgres" / "PG_VERSION").write_text("16\n")
    result = devdb(data_dir, "url")
    assert result.returncode == 0, result.stderr
    assert answers(result.stdout.strip())


def test_stale_pid_file_of_another_program_is_ignored(data_dir: Path) -> None:
    url = devdb(data_dir, "url").stdout.strip()
    devdb(data_dir, "stop")
    # A postmaster.pid naming a live process that is not Postgres: this one.
    pid_file = data_dir / "postgres" / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{data_dir}\n0\n5432\n\n\n\nready\n")
    result = devdb(data_dir, "url")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == url and answers(url)
