"""Run one runner: ``python -m capstone.runtime``.

Reads its identity from ``POD_NAME`` (or ``RUNNER_ID``) and its database from
``DATABASE_URL`` (or the embedded server). Serves /healthz and /readyz on
``RUNTIME_HOST:RUNTIME_PORT`` until SIGTERM or Ctrl-C. A start that cannot finish
exits with one line saying why: 2 for settings, 1 for anything else.
"""

import asyncio
import sys

import psycopg
import sqlalchemy.exc
import uvicorn

from capstone.devdb import DatabaseUnavailable
from capstone.logs import configure_logging
from capstone.runtime.assembly import StartupError, read_settings, running_runner
from capstone.runtime.runner import RunnerAlreadyRunning, health_app
from capstone.runtime.settings import RuntimeSettings


async def serve(settings: RuntimeSettings) -> None:
    async with running_runner(settings) as runner:
        server = uvicorn.Server(
            uvicorn.Config(
                health_app(runner),
                host=settings.http_host,
                port=settings.http_port,
                log_level="warning",
                lifespan="off",
            )
        )
        await server.serve()


def main() -> int:
    configure_logging("runtime")
    try:
        settings = read_settings()
    except StartupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    except RunnerAlreadyRunning as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (
        DatabaseUnavailable,
        OSError,
        psycopg.OperationalError,
        sqlalchemy.exc.OperationalError,
    ) as error:
        reason = str(error).strip().splitlines()[0]
        print(f"error: cannot reach the database: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
