"""The internal gateway: HTTP, Server-Sent Events and WebSocket in front of the runners."""
