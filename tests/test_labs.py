"""The labs themselves: generated files up to date; for every lab, the untouched
skeleton fails every task with that task's own message, the solution passes, and
each planted mistake is caught by the task that should catch it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from course import build, labdef
from course.catalog import LABS
from course.grade import all_passed, grade

READY = [entry for entry in LABS if entry.available]
MISTAKES = [
    pytest.param(entry, mistake, id=f"lab{entry.number}-{mistake.name}")
    for entry in READY
    for mistake in labdef.load(entry).mistakes
]
pytestmark = pytest.mark.timeout(600)


def test_generated_files_are_up_to_date() -> None:
    assert build.stale_files() == [], "run `python -m course.build` and commit"


def write_lab(entry: labdef.LabEntry, target: str, into: Path) -> Path:
    """A fresh copy of the lab's generated skeleton ("labs") or solution."""
    folder = into / target
    folder.mkdir()
    for path, content in build.generated(labdef.load(entry)).items():
        if path.parent.parent.name == target:
            (folder / path.name).write_text(content)
    return folder


def reference_lines(entry: labdef.LabEntry) -> set[str]:
    """Lines of reference code that the skeleton leaves out."""
    definition = labdef.load(entry)
    lines: set[str] = set()
    for path, content in build.generated(definition).items():
        if path.parent.parent.name != "solutions":
            continue
        skeleton = build.generated(definition)[
            Path(str(path).replace("/solutions/", "/labs/"))
        ]
        lines |= {
            line.strip()
            for line in content.splitlines()
            if len(line.strip()) > 24 and line not in skeleton.splitlines()
        }
    return lines


@pytest.mark.parametrize("entry", READY, ids=lambda e: f"lab{e.number}")
def test_skeleton_fails_every_task_with_its_own_message(
    entry: labdef.LabEntry, tmp_path: Path
) -> None:
    result = grade(entry.number, write_lab(entry, "labs", tmp_path), capture=True)
    tasks = result["tasks"]
    assert [t["id"] for t in tasks] == [t.id for t in labdef.load(entry).tasks]
    for task in tasks:
        assert not task["passed"], f"Task {task['id']} passes on the skeleton"
        assert f"Task {task['id']}:" in task["got"], task
    # Hidden checks stay hidden: no line of the answer appears in the feedback.
    leaked = [line for line in reference_lines(entry) if line in result["output"]]
    assert not leaked, leaked


@pytest.mark.parametrize("entry", READY, ids=lambda e: f"lab{e.number}")
def test_solution_passes(entry: labdef.LabEntry, tmp_path: Path) -> None:
    result = grade(entry.number, write_lab(entry, "solutions", tmp_path), capture=True)
    assert all_passed(result), result["output"]


@pytest.mark.parametrize(("entry", "mistake"), MISTAKES)
def test_planted_mistake_is_caught(
    entry: labdef.LabEntry, mistake: labdef.Mistake, tmp_path: Path
) -> None:
    folder = write_lab(entry, "solutions", tmp_path)
    target = folder / mistake.file
    text = target.read_text()
    assert text.count(mistake.find) == 1, f"{mistake.find!r} not found once"
    target.write_text(text.replace(mistake.find, mistake.replace))

    result = grade(entry.number, folder, tasks=[mistake.task], capture=True)
    outcome = {task["id"]: task["passed"] for task in result["tasks"]}
    assert outcome == {mistake.task: False}, result["output"]


def test_a_file_that_does_not_parse_is_reported(tmp_path: Path) -> None:
    entry = READY[0]
    folder = write_lab(entry, "solutions", tmp_path)
    definition = labdef.load(entry)
    first = definition.tasks[0]
    broken = folder / first.functions[0].split(":")[0]
    broken.write_text(broken.read_text() + "\ndef oops(:\n")
    result = grade(entry.number, folder, tasks=[first.id], capture=True)
    assert not result["tasks"][0]["passed"]
    assert "does not parse" in result["tasks"][0]["got"]
    shutil.rmtree(folder)
