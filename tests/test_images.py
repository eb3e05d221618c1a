"""The three images, read as text (no Docker engine runs here): multi-stage, a
pinned base, a numeric non-root user, only the capstone copied, a command that
exists, and the port the deployment expects."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IMAGES = {
    "Dockerfile": ("capstone.runtime", "8081"),
    "Dockerfile.gateway": ("capstone.gateway", "8080"),
    "Dockerfile.edge": ("capstone.edge", "8080"),
}
PINNED = re.compile(r"^FROM python:\d+\.\d+\.\d+-slim-\w+ AS \w+$")


def stages(path: Path) -> list[list[str]]:
    found: list[list[str]] = []
    for line in path.read_text().splitlines():
        if line.startswith("FROM "):
            found.append([])
        if found and line and not line.startswith("#"):
            found[-1].append(line)
    return found


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_image_is_multi_stage_pinned_and_unprivileged(name: str) -> None:
    module, port = IMAGES[name]
    built = stages(REPO / name)
    assert len(built) >= 2, "a build stage and a runtime stage"
    for stage in built:
        assert PINNED.match(stage[0]), f"unpinned base: {stage[0]}"
    runtime = built[-1]
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1].isdigit() and users[-1] != "0", users
    copies = [line for line in runtime if line.startswith("COPY ")]
    assert copies == ["COPY --from=build /venv /venv"], "only the installed venv"
    assert f"EXPOSE {port}" in runtime
    assert runtime[-1] == f'CMD ["python", "-m", "{module}"]'
    assert importlib.util.find_spec(module) is not None


def test_the_build_context_leaves_out_what_does_not_run() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".data", ".git"} <= set(ignored)
