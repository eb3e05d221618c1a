"""Each stack's declared resources, computed once per test session under mocks."""

from __future__ import annotations

import pytest

from infra.stack import build
from infra.testing import Graph, run, stack_settings

STACKS = ("dev", "staging", "prod")


@pytest.fixture(scope="session")
def graphs() -> dict[str, Graph]:
    return {name: run(build, stack_settings(name), stack=name) for name in STACKS}


@pytest.fixture(scope="session")
def prod(graphs: dict[str, Graph]) -> Graph:
    return graphs["prod"]


@pytest.fixture(scope="session")
def dev(graphs: dict[str, Graph]) -> Graph:
    return graphs["dev"]
