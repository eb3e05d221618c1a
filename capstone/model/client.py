"""Which chat model the capstone talks to, and the client that reaches it.

The environment decides:

| ``OPENAI_API_KEY`` | ``OPENAI_BASE_URL`` | the client talks to                    |
|--------------------|---------------------|----------------------------------------|
| unset              | unset               | the offline scripted model, in process |
| set or unset       | set                 | the OpenAI-compatible endpoint there   |
| set                | unset               | OpenAI's API                           |

``OPENAI_MODEL`` names the model; it defaults to ``offline-scripted-1`` offline and
``gpt-4o-mini`` otherwise. An empty variable counts as unset.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx2
import openai
from fastapi import FastAPI

from capstone.model.offline import MODEL_NAME, create_offline_model_app

OFFLINE_BASE_URL = "http://offline-model.invalid/v1"
PROVIDER_BASE_URL = "https://api.openai.com/v1"
DEFAULT_PROVIDER_MODEL = "gpt-4o-mini"
PLACEHOLDER_API_KEY = "offline"


@dataclass(frozen=True)
class ModelSettings:
    api_key: str | None = field(repr=False)
    base_url: str | None
    model: str
    timeout_seconds: float = 30.0

    @property
    def offline(self) -> bool:
        return not self.api_key and not self.base_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ModelSettings:
        env = os.environ if environ is None else environ
        api_key = env.get("OPENAI_API_KEY") or None
        base_url = env.get("OPENAI_BASE_URL") or None
        offline = api_key is None and base_url is None
        default_model = MODEL_NAME if offline else DEFAULT_PROVIDER_MODEL
        model = env.get("OPENAI_MODEL") or default_model
        return cls(api_key=api_key, base_url=base_url, model=model)


class InProcessTransport(httpx2.AsyncBaseTransport):
    """Hands requests straight to an ASGI app, under the read timeout a socket has.

    ``httpx2.ASGITransport`` enforces no timeout, so without this a ``timeout``
    fault would hold an in-process client for the fault's whole delay. The limit
    covers the whole exchange, because ``ASGITransport`` also buffers the body: a
    streamed reply arrives in one piece in process, and a paced stream longer than
    the read timeout times out. A transport that passed the app's body chunks on as
    they are sent would remove both; until then, serve the model on a socket
    (``python -m capstone.model.offline``) to watch tokens arrive.
    """

    def __init__(self, app: FastAPI) -> None:
        self._asgi = httpx2.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeouts = request.extensions.get("timeout", {})
        try:
            async with asyncio.timeout(timeouts.get("read")):
                return await self._asgi.handle_async_request(request)
        except TimeoutError as exc:
            message = "the offline model did not answer in time"
            raise httpx2.ReadTimeout(message, request=request) from exc

    async def aclose(self) -> None:
        await self._asgi.aclose()


def make_model_client(
    settings: ModelSettings, offline_app: FastAPI | None = None
) -> openai.AsyncOpenAI:
    """A client for the model ``settings`` name; ``offline_app`` serves offline mode.

    ``offline_app`` lets a test or drill keep a handle on the offline model's faults
    and call log; it is ignored when ``settings`` name a key or an endpoint.
    """
    # The durable workflow owns the retry budget, so the client never retries.
    max_retries = 0

    if settings.offline:
        transport = InProcessTransport(offline_app or create_offline_model_app())
        return openai.AsyncOpenAI(
            api_key=PLACEHOLDER_API_KEY,
            base_url=OFFLINE_BASE_URL,
            http_client=httpx2.AsyncClient(transport=transport),
            max_retries=max_retries,
            timeout=settings.timeout_seconds,
        )

    # Both are passed explicitly so the client never reads them from the
    # environment behind the settings' back.
    return openai.AsyncOpenAI(
        api_key=settings.api_key or PLACEHOLDER_API_KEY,
        base_url=settings.base_url or PROVIDER_BASE_URL,
        max_retries=max_retries,
        timeout=settings.timeout_seconds,
    )


def describe(settings: ModelSettings) -> str:
    """Where the model is, in one line fit for a log; never the key."""
    if settings.offline:
        return "offline scripted model (in-process)"

    url = settings.base_url or PROVIDER_BASE_URL
    return f"OpenAI-compatible endpoint at {_public_url(url)}"


def _public_url(url: str) -> str:
    # A URL may carry a password in its userinfo or a key in its query.
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "an unparseable URL"

    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
