"""Planted mistakes: each, put into a copy of infra/, makes these tests fail.

A test that cannot fail proves nothing. Each case below changes one line of the
stack the way a hurried engineer might, runs the offline tests against the
changed copy, and expects the named tests to fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

INFRA = Path(__file__).resolve().parent.parent

MISTAKES = [
    pytest.param(
        "database.py",
        "ipv4_enabled=False,",
        "ipv4_enabled=True,",
        [
            "test_database_is_private_regional_and_recoverable",
            "test_every_stack_complies",
        ],
        id="a public IP on the database",
    ),
    pytest.param(
        "database.py",
        "pulumi.ResourceOptions(depends_on=[network.connection])",
        "pulumi.ResourceOptions()",
        ["test_database_waits_for_the_service_networking_connection"],
        id="a missing depends_on",
    ),
    pytest.param(
        "kubernetes.py",
        '"readiness_probe": probe("/readyz", 5, 2),',
        '"readiness_probe": probe("/healthz", 5, 2),',
        ["test_runner_probes_grace_and_resources"],
        id="wrong probe paths",
    ),
    pytest.param(
        "kubernetes.py",
        """        core.EnvVarArgs(
            name="POD_NAME",
            value_from=core.EnvVarSourceArgs(
                field_ref=core.ObjectFieldSelectorArgs(field_path="metadata.name")
            ),
        ),""",
        '        core.EnvVarArgs(name="POD_NAME", value=f"runner-{id(placement)}"),',
        ["test_runner_pods_name_themselves_from_the_downward_api"],
        id="a random pod name instead of the downward API",
    ),
    pytest.param(
        "labels.py",
        '"component": component}',
        "}",
        ["test_every_stack_complies"],
        id="a missing label",
    ),
]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("file", "find", "replace", "failing"), MISTAKES)
def test_the_tests_catch_a_planted_mistake(
    file: str, find: str, replace: str, failing: list[str], tmp_path: Path
) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns("__pycache__"))
    source = (copy / file).read_text()
    assert source.count(find) == 1, f"{file}: the text to change is not there once"
    changed = source.replace(find, replace)
    (copy / file).write_text(changed)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    where = subprocess.run(
        [sys.executable, "-c", "import infra; print(infra.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip() == str(copy / "__init__.py"), "not the copy"

    result = subprocess.run(
        [
            sys.executable,
            *("-m", "pytest", str(copy / "tests"), "-q", "-rf"),
            *("-p", "no:cacheprovider", "-k", "not planted_mistake"),
            *("--rootdir", str(tmp_path), "-W", "ignore::DeprecationWarning"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 1, report[-3000:]
    for test in failing:
        assert f"::{test}" in report, f"{test} did not fail:\n{report[-3000:]}"
