"""Shared fixtures: one running stack (Postgres, runner, gateway) per test session.

See ``capstone/testing.py``: the tests use a database of their own, made fresh per
session, and talk to the gateway with real HTTP and WebSocket clients.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from capstone.testing import Stack, free_port, running_stack

__all__ = ["Stack", "free_port"]


@pytest.fixture(scope="session")
async def stack() -> AsyncIterator[Stack]:
    async with running_stack("agents_test") as running:
        yield running


@pytest.fixture
def session_id() -> str:
    return "s-" + uuid.uuid4().hex[:12]
