"""Make every lab's skeleton and solution files from the marked reference code.

    python -m course.build           write labs/NN-*/ and solutions/NN-*/ files
    python -m course.build --check   exit 1 if a committed file is out of date

The check compares ``solutions/`` with the working tree, and ``labs/`` with what
git has committed, so a learner's edits in ``labs/`` never count as out of date.
Learners never run this; the lab's README.md is written by hand and not touched.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from course import labdef
from course.catalog import LABS, REPO
from course.regions import render, tasks_in


def generated(definition: labdef.LabDefinition) -> dict[Path, str]:
    """Every file this lab generates, by path, with its content."""
    number = definition.entry.number
    files: dict[Path, str] = {}
    covered: set[int] = set()
    for item in definition.files:
        source = (REPO / item.source).read_text()
        covered |= tasks_in(source, number)
        python = item.name.endswith(".py")
        for target, skeleton in (("labs", True), ("solutions", False)):
            path = REPO / target / definition.entry.folder / item.name
            files[path] = render(
                source,
                number,
                skeleton,
                lambda task: definition.task(task).title,
                python=python,
            )
    declared = {task.id for task in definition.tasks}
    if covered != declared:
        raise SystemExit(
            f"lab {number}: tasks in lab.toml {sorted(declared)} but marked regions "
            f"for {sorted(covered)}"
        )
    return files


def committed(path: Path) -> str | None:
    relative = path.relative_to(REPO)
    result = subprocess.run(
        ["git", "show", f"HEAD:{relative}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None


def stale_files() -> list[str]:
    stale = []
    for entry in LABS:
        if not entry.available:
            continue
        for path, content in generated(labdef.load(entry)).items():
            if path.is_relative_to(REPO / "labs"):
                current = committed(path)
                if current is None and path.exists():
                    current = path.read_text()
            else:
                current = path.read_text() if path.exists() else None
            if current != content:
                stale.append(str(path.relative_to(REPO)))
    return stale


def write_all() -> list[str]:
    written = []
    for entry in LABS:
        if not entry.available:
            continue
        for path, content in generated(labdef.load(entry)).items():
            if not path.exists() or path.read_text() != content:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
                written.append(str(path.relative_to(REPO)))
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.build")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"out of date: {name}")
        if stale:
            print("run `python -m course.build` and commit the result")
        return 1 if stale else 0
    for name in write_all():
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
