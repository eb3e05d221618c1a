"""What every lab's grader shares: the lab's definition, the learner's folder, and
the swap of each task's functions into the reference capstone for that task's
tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

# Import the whole capstone before any swap, so every binding of a task's function
# is replaced for the test and restored after it.
import capstone.gateway.app  # noqa: F401
import capstone.testing  # noqa: F401
from capstone.testing import Stack, running_stack
from course import labdef
from course.catalog import lab
from course.swap import swapped


@pytest.fixture(scope="session")
def lab_definition(request: pytest.FixtureRequest) -> labdef.LabDefinition:
    return labdef.load(lab(request.config.getoption("--lab")))


@pytest.fixture(scope="session")
def lab_dir(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.getoption("--lab-dir"))


@pytest.fixture(autouse=True)
def learner_code(
    request: pytest.FixtureRequest,
    lab_definition: labdef.LabDefinition,
    lab_dir: Path,
) -> Iterator[None]:
    marker = request.node.get_closest_marker("task")
    if marker is None:
        yield
        return
    with swapped(lab_definition, lab_dir, int(marker.args[0])):
        yield


@pytest.fixture(scope="session")
async def stack(lab_definition: labdef.LabDefinition) -> AsyncIterator[Stack]:
    """The reference capstone, running, on a fresh database of this lab's own."""
    number = lab_definition.entry.number
    async with running_stack(
        f"agents_lab{number:02d}", runner_id=f"lab{number:02d}-runner-0"
    ) as running:
        yield running
