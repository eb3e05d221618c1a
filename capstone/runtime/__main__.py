"""Run one runner: ``python -m capstone.runtime``.

Reads its identity from ``POD_NAME`` (or ``RUNNER_ID``) and its database from
``DATABASE_URL`` (or the embedded server). Serves /healthz and /readyz on
``RUNTIME_HOST:RUNTIME_PORT`` until SIGTERM or Ctrl-C.
"""

import asyncio
import sys

import uvicorn
from pydantic import ValidationError

from capstone.logs import configure_logging
from capstone.runtime.runner import (
    RunnerAlreadyRunning,
    health_app,
    start_runner,
    stop_runner,
)
from capstone.runtime.settings import RuntimeSettings


async def main() -> None:
    settings = RuntimeSettings()
    runner = await start_runner(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            health_app(runner),
            host=settings.http_host,
            port=settings.http_port,
            log_level="warning",
            lifespan="off",
        )
    )
    try:
        await server.serve()
    finally:
        await stop_runner(runner)


if __name__ == "__main__":
    configure_logging("runtime")
    try:
        asyncio.run(main())
    except ValidationError as error:
        print(f"error: invalid runtime settings:\n{error}", file=sys.stderr)
        sys.exit(2)
    except RunnerAlreadyRunning as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
