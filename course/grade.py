"""Grade a lab: ``python -m course.grade N`` (``make lab-N``).

    python -m course.grade 11              the learner's labs/11-*/ files
    python -m course.grade 11 --solution   the reference copy in solutions/11-*/
    python -m course.grade 11 -v           with tracebacks

Runs the lab's grader in its own process under a time limit, prints the report by
task and exits 0 only when every task passes. The result of grading ``labs/`` is
kept for ``make progress``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from course import labdef
from course.catalog import REPO, lab

TIME_LIMIT_SECONDS = 240
PROGRESS_DIR = REPO / ".data" / "progress"


def fingerprint(definition: labdef.LabDefinition, lab_dir: Path) -> str:
    digest = hashlib.sha256()
    for item in definition.files:
        path = lab_dir / item.name
        digest.update(path.read_bytes() if path.exists() else b"missing")
    return digest.hexdigest()


def grade(
    number: int,
    lab_dir: Path,
    verbose: bool = False,
    tasks: list[int] | None = None,
    capture: bool = False,
) -> dict[str, Any]:
    """Run the grader on ``lab_dir``; return the per-task results."""
    entry = lab(number)
    if not entry.available:
        raise SystemExit(f"lab {number} ({entry.title}) is not in the course yet")
    with tempfile.TemporaryDirectory() as scratch:
        results = Path(scratch) / "results.json"
        # The grader's own output replaces pytest's (no:terminal); the project's
        # addopts are for its own tests, not for graders.
        options = "-p course.feedback -p no:cacheprovider -p no:terminal"
        options += " -o addopts= -o timeout=60 -W ignore::DeprecationWarning"
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(entry.grader),
            *options.split(),
            *("--lab", str(number), "--lab-dir", str(lab_dir)),
            *("--lab-json", str(results)),
        ]
        if verbose:
            command.append("--lab-verbose")
        if tasks:
            command += ["--lab-tasks", ",".join(str(t) for t in tasks)]
        process = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
            start_new_session=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        try:
            output, _ = process.communicate(timeout=TIME_LIMIT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            print(
                f"\nThe grader stopped after {TIME_LIMIT_SECONDS}s without finishing. "
                "Look for a loop that never ends or a call that never returns."
            )
            return {"lab": number, "tasks": [], "timed_out": True, "output": ""}
        text = output.decode(errors="replace") if output else ""
        if not results.exists():
            print("\nThe grader could not run; see the output above.")
            return {"lab": number, "tasks": [], "crashed": True, "output": text}
        return {**json.loads(results.read_text()), "output": text}


def all_passed(result: dict[str, Any]) -> bool:
    return bool(result["tasks"]) and all(task["passed"] for task in result["tasks"])


def remember(number: int, lab_dir: Path, result: dict[str, Any]) -> None:
    definition = labdef.load(lab(number))
    PROGRESS_DIR.mkdir(parents=True, exist_ok=True)
    record = {
        "tasks": result["tasks"],
        "fingerprint": fingerprint(definition, lab_dir),
    }
    (PROGRESS_DIR / f"lab{number:02d}.json").write_text(json.dumps(record))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.grade")
    parser.add_argument("number", type=int)
    parser.add_argument("--solution", action="store_true")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    entry = lab(args.number)
    target = "solutions" if args.solution else "labs"
    lab_dir = args.dir or Path(labdef.lab_dir(entry, target))
    result = grade(args.number, lab_dir, verbose=args.verbose)
    if target == "labs" and args.dir is None and result["tasks"]:
        remember(args.number, lab_dir, result)
    return 0 if all_passed(result) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
