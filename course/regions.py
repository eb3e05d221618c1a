"""Marked regions in the reference code, and the two files made from them.

In ``capstone/`` a function body that a lab asks for sits between two comments:

    def execution_id_for(...) -> str:
        \"\"\"...\"\"\"
        # lab 11.1 begin
        ...the reference code...
        # lab 11.1 end

For lab 11 the skeleton replaces the region with
``raise NotImplementedError("Task 1: <title>")``; the solution keeps the code.
Regions of other labs in the same file keep their code in both, and every marker
line is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MARKER = re.compile(
    r"^(?P<indent>\s*)# lab (?P<lab>\d+)\.(?P<task>\d+) (?P<kind>begin|end)\s*$"
)


class RegionError(ValueError):
    pass


def render(
    text: str,
    lab: int,
    skeleton: bool,
    title_of: Callable[[int], str],
    python: bool = True,
) -> str:
    """The lab's skeleton or solution version of one reference file.

    In a file that is not Python (a compose file, say) the skeleton leaves a
    comment naming the task where the region was.
    """
    out: list[str] = []
    open_region: tuple[int, int, str] | None = None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = MARKER.match(line)
        if marker is None:
            if open_region is None or not (skeleton and open_region[0] == lab):
                out.append(line)
            continue

        region = (int(marker["lab"]), int(marker["task"]), marker["indent"])
        if marker["kind"] == "begin":
            if open_region is not None:
                raise RegionError(f"line {number}: a region begins inside another")
            open_region = region
            if skeleton and region[0] == lab:
                task = f"Task {region[1]}: {title_of(region[1])}"
                if python:
                    out.append(f'{region[2]}raise NotImplementedError("{task}")\n')
                else:
                    out.append(f"{region[2]}# {task}\n")
        else:
            if open_region is None or open_region[:2] != region[:2]:
                raise RegionError(f"line {number}: an end without its begin")
            open_region = None
    if open_region is not None:
        raise RegionError(f"region lab {open_region[0]}.{open_region[1]} never ends")
    return "".join(out)


def tasks_in(text: str, lab: int) -> set[int]:
    return {
        int(m["task"])
        for line in text.splitlines()
        if (m := MARKER.match(line)) and int(m["lab"]) == lab and m["kind"] == "begin"
    }
