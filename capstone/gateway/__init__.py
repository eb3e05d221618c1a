"""The internal gateway: HTTP, SSE and WebSocket in front of the runners."""
