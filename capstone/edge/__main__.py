"""Run the edge: ``python -m capstone.edge`` (GATEWAY_URL, PORT)."""

import sys

import uvicorn
from pydantic import ValidationError

from capstone.edge.app import EdgeSettings, create_app
from capstone.logs import configure_logging

if __name__ == "__main__":
    configure_logging("edge")
    try:
        settings = EdgeSettings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}"
            for e in error.errors()
        )
        sys.exit(f"edge: invalid settings: {problems}")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
    )
