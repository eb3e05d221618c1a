"""``make progress``: where you are in the 25 labs.

Reads what ``make lab-N`` last recorded for each lab. A lab whose files changed
since then shows as changed: grade it again to see where it stands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from course import labdef
from course.catalog import LABS
from course.grade import PROGRESS_DIR, fingerprint


def row(number: int) -> tuple[str, str]:
    """The tasks column and the next step for one lab."""
    entry = LABS[number - 1]
    if not entry.available:
        return "-", "not in the course yet"
    definition = labdef.load(entry)
    total = len(definition.tasks)
    record_path = PROGRESS_DIR / f"lab{number:02d}.json"
    if not record_path.exists():
        return f"?/{total}", f"make lab-{number}"
    record = json.loads(record_path.read_text())
    lab_dir = Path(labdef.lab_dir(entry, "labs"))
    passed = sum(task["passed"] for task in record["tasks"])
    if record.get("fingerprint") != fingerprint(definition, lab_dir):
        return f"{passed}/{total}", f"changed since graded: make lab-{number}"
    if passed == total:
        return f"{passed}/{total}", "done"
    first = next(task for task in record["tasks"] if not task["passed"])
    return f"{passed}/{total}", f"Task {first['id']}: {first['title']}"


def table() -> str:
    lines = [f"{'lab':>3}  {'title':<42} {'tasks':>5}  next", "-" * 88]
    for entry in LABS:
        tasks, step = row(entry.number)
        lines.append(f"{entry.number:>3}  {entry.title[:42]:<42} {tasks:>5}  {step}")
    ready = sum(entry.available for entry in LABS)
    lines.append("-" * 88)
    lines.append(f"{ready} of {len(LABS)} labs are ready. Grade one with make lab-N.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
    sys.exit(0)
