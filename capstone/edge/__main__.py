"""Run the edge: ``python -m capstone.edge`` (GATEWAY_URL, PORT)."""

import uvicorn

from capstone.edge.app import EdgeSettings, create_app
from capstone.logs import configure_logging

if __name__ == "__main__":
    configure_logging("edge")
    settings = EdgeSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
    )
