"""The capstone on this machine: each part its own process, as in production.

    python -m capstone.local        run until Ctrl-C (``make up``)

Starts the embedded Postgres (unless ``DATABASE_URL`` is set), the offline model on
a loopback port (unless ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set), two
runners named like StatefulSet pods (``runner-0``, ``runner-1``), the gateway and
the edge in front of it.
Each process logs to ``.data/logs/<name>.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from capstone import devdb

LOG_DIR = devdb.DATA_DIR / "logs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalStack:
    database_url: str
    gateway_url: str
    model_url: str | None
    runner_urls: list[str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    commands: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    edge_url: str = ""

    def restart(self, name: str) -> None:
        """Start a process again with the same arguments: the same runner id."""
        args, env = self.commands[name]
        self.processes[name] = _spawn(name, args, env, append=True)


def _spawn(
    name: str, args: list[str], env: dict[str, str], append: bool = False
) -> subprocess.Popen[bytes]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / f"{name}.log", "ab" if append else "wb")
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=devdb.REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(
    name: str, url: str, process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (LOG_DIR / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
        try:
            reply = httpx.get(url, timeout=2)
            if reply.status_code == 200:
                return
            last = reply.text
        except httpx.HTTPError as error:
            last = str(error)
        time.sleep(0.1)
    raise RuntimeError(f"{name} not ready at {url} after {timeout}s: {last}")


@contextlib.contextmanager
def local_stack(
    database: str = devdb.DEFAULT_DATABASE,
    runners: int = 2,
    token_delay: float = 0.0,
    fresh: bool = False,
) -> Iterator[LocalStack]:
    """Start everything, wait until the gateway is ready, stop it all on exit."""
    database_url = devdb.database_url(database)
    if fresh:
        devdb.drop_database(database_url)
        devdb.ensure_database(database_url)

    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    commands: dict[str, tuple[list[str], dict[str, str]]] = {}

    def start(name: str, args: list[str], process_env: dict[str, str]) -> None:
        commands[name] = (args, process_env)
        processes[name] = _spawn(name, args, process_env)

    model_url = None
    try:
        if not (env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL")):
            port = free_port()
            model_url = f"http://127.0.0.1:{port}"
            start(
                "model",
                [
                    "-m",
                    "capstone.model.offline",
                    "--port",
                    str(port),
                    "--token-delay",
                    str(token_delay),
                ],
                env,
            )
            _wait_ready("model", model_url + "/v1/models", processes["model"], 30)
            env["OPENAI_BASE_URL"] = model_url + "/v1"

        runner_urls = []
        for index in range(runners):
            name, port = f"runner-{index}", free_port()
            start(
                name,
                ["-m", "capstone.runtime"],
                {**env, "RUNNER_ID": name, "RUNTIME_PORT": str(port)},
            )
            runner_urls.append(f"http://127.0.0.1:{port}")

        gateway_port = free_port()
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        start(
            "gateway",
            ["-m", "capstone.gateway"],
            {**env, "GATEWAY_PORT": str(gateway_port)},
        )
        for index, url in enumerate(runner_urls):
            _wait_ready(
                f"runner-{index}", url + "/readyz", processes[f"runner-{index}"], 60
            )
        _wait_ready("gateway", gateway_url + "/readyz", processes["gateway"], 60)

        edge_port = free_port()
        edge_url = f"http://127.0.0.1:{edge_port}"
        start(
            "edge",
            ["-m", "capstone.edge"],
            {**env, "GATEWAY_URL": gateway_url, "EDGE_PORT": str(edge_port)},
        )
        _wait_ready("edge", edge_url + "/readyz", processes["edge"], 30)

        yield LocalStack(
            database_url,
            gateway_url,
            model_url,
            runner_urls,
            processes,
            commands,
            edge_url,
        )
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


RESTART_BUDGET = 5
RESTART_WINDOW_SECONDS = 60.0


def _stop_on(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Closing the terminal (SIGHUP) or `kill` (SIGTERM) stops the stack like Ctrl-C
    # does, so no process is left behind holding a runner id.
    signal.signal(signal.SIGTERM, _stop_on)
    signal.signal(signal.SIGHUP, _stop_on)
    restarts: list[float] = []
    with contextlib.suppress(KeyboardInterrupt), local_stack(token_delay=0.03) as stack:
        print(f"edge      {stack.edge_url}   (the public door: per-tenant rate limit)")
        print(f"gateway   {stack.gateway_url}   (API docs at {stack.gateway_url}/docs)")
        for index, url in enumerate(stack.runner_urls):
            print(f"runner-{index}  {url}/readyz")
        if stack.model_url:
            print(
                f"offline model {stack.model_url}/v1  (faults: POST /_offline/faults)"
            )
        print(f"database  {devdb.redact(stack.database_url)}")
        print(f"logs      {LOG_DIR}/")
        print(
            "A process that exits is started again with the same name, as Kubernetes "
            "would.\nCtrl-C stops everything but the embedded Postgres (make db-stop)."
        )
        while True:
            time.sleep(0.5)
            for name, process in list(stack.processes.items()):
                if process.poll() is None:
                    continue
                now = time.monotonic()
                restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW_SECONDS]
                if len(restarts) >= RESTART_BUDGET:
                    print(f"{name} keeps exiting; see {LOG_DIR}/{name}.log. Stopping.")
                    return 1
                restarts.append(now)
                print(f"{name} exited with {process.returncode}; starting it again")
                stack.restart(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
