"""Run the gateway: ``python -m capstone.gateway`` (GATEWAY_HOST, GATEWAY_PORT)."""

import uvicorn

from capstone.gateway.app import GatewaySettings, create_app
from capstone.logs import configure_logging

if __name__ == "__main__":
    configure_logging("gateway")
    settings = GatewaySettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        ws_max_size=settings.max_body_bytes,
    )
