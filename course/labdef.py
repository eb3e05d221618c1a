"""A lab's definition, ``graders/labNN/lab.toml``: its files, tasks and planted
mistakes.

    [[files]]      source = "capstone/domain/ids.py"   # where the reference lives
                   name = "ids.py"                     # the file in the lab folder
                   module = "capstone.domain.ids"      # what the grader swaps it into
    [[tasks]]      id = 1, title = "...", functions = ["ids.py:execution_id_for"],
                   section = "#idempotency", hint = "..."
    [[mistakes]]   name = "...", file = "ids.py", find = "...", replace = "...",
                   task = 1                            # the task that must catch it
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from course.catalog import REPO, LabEntry


@dataclass(frozen=True)
class LabFile:
    source: str
    name: str
    module: str


@dataclass(frozen=True)
class Task:
    id: int
    title: str
    functions: tuple[str, ...]
    section: str
    hint: str

    @property
    def label(self) -> str:
        return f"Task {self.id}: {self.title}"


@dataclass(frozen=True)
class Mistake:
    name: str
    file: str
    find: str
    replace: str
    task: int


@dataclass(frozen=True)
class LabDefinition:
    entry: LabEntry
    module_text: str
    files: tuple[LabFile, ...]
    tasks: tuple[Task, ...]
    mistakes: tuple[Mistake, ...]

    def file(self, name: str) -> LabFile:
        for item in self.files:
            if item.name == name:
                return item
        raise KeyError(f"lab {self.entry.number} has no file {name}")

    def task(self, task_id: int) -> Task:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(f"lab {self.entry.number} has no task {task_id}")


def load(entry: LabEntry) -> LabDefinition:
    data = tomllib.loads((entry.grader / "lab.toml").read_text())
    return LabDefinition(
        entry=entry,
        module_text=f"modules/{entry.folder}/README.md",
        files=tuple(
            LabFile(item["source"], item["name"], item.get("module", ""))
            for item in data["files"]
        ),
        tasks=tuple(
            Task(
                id=item["id"],
                title=item["title"],
                functions=tuple(item.get("functions", [])),
                section=item.get("section", ""),
                hint=item["hint"],
            )
            for item in data["tasks"]
        ),
        mistakes=tuple(Mistake(**item) for item in data.get("mistakes", [])),
    )


def lab_dir(entry: LabEntry, target: str) -> str:
    """The learner's folder ("labs") or the reference copy's ("solutions")."""
    return str(REPO / target / entry.folder)
