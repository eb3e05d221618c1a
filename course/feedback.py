"""A pytest plugin that reports a lab by task, in words a learner can act on.

Each grader test carries ``@pytest.mark.task(N)``. A task passes when all its tests
pass. For a failed task the report shows what was called, what came back, what
was expected, a hint, and the module section to read; a Python traceback only
with ``--lab-verbose`` (``make lab-N V=1``). Results are also written as JSON for
``make progress`` and the course's own tests.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _pytest._io import TerminalWriter

from course import labdef
from course.catalog import REPO, lab
from course.check import LabCheckFailed
from course.swap import LabFileError


@dataclass
class TaskResult:
    passed: bool = True
    ran: int = 0
    called: str = ""
    got: str = ""
    expected: str = ""
    hint: str = ""
    traceback: str = ""


@dataclass
class Report:
    definition: labdef.LabDefinition
    lab_dir: Path
    results: dict[int, TaskResult] = field(default_factory=dict)


class _ErrorLog(logging.Handler):
    """Keeps the errors the capstone logs during a test: a learner's exception
    usually surfaces there (a 500 from the gateway, a failed workflow)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            self.messages.append(_describe(error))


def _root_cause(error: BaseException) -> BaseException:
    seen = set()
    while id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, NotImplementedError):
            return error
        nested = getattr(error, "errors", None)
        if (
            isinstance(nested, list)
            and nested
            and isinstance(nested[-1], BaseException)
        ):
            error = nested[-1]
            continue
        cause = error.__cause__ or error.__context__
        if cause is None:
            return error
        error = cause
    return error


def _what_the_test_does(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None)
    if doc:
        return str(doc).strip().splitlines()[0]
    return item.name.removeprefix("test_").replace("_", " ")


def _describe(error: BaseException) -> str:
    cause = _root_cause(error)
    return f"{type(cause).__name__}: {cause}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--lab", type=int, required=False)
    parser.addoption("--lab-dir")
    parser.addoption("--lab-json")
    parser.addoption("--lab-verbose", action="store_true")
    parser.addoption("--lab-tasks", help="grade only these tasks, e.g. 1,3")


class _SilentTerminal:
    """Stands in for pytest's terminal reporter, which graders switch off: the
    time-limit plugin writes the hung test's stacks to it before failing it."""

    def __init__(self) -> None:
        self._tw = TerminalWriter(open(os.devnull, "w"))  # noqa: SIM115


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "task(n): the lab task this test checks")
    number = config.getoption("--lab")
    if number is None:
        return
    if config.pluginmanager.get_plugin("terminalreporter") is None:
        config.pluginmanager.register(_SilentTerminal(), "terminalreporter")
    definition = labdef.load(lab(number))
    lab_dir = Path(
        config.getoption("--lab-dir") or labdef.lab_dir(definition.entry, "labs")
    )
    chosen = config.getoption("--lab-tasks")
    wanted = {int(t) for t in chosen.split(",")} if chosen else None
    report = Report(
        definition,
        lab_dir,
        {
            task.id: TaskResult()
            for task in definition.tasks
            if wanted is None or task.id in wanted
        },
    )
    config.stash[_REPORT] = report
    os.environ["COURSE_LAB_DIR"] = str(lab_dir)


_REPORT = pytest.StashKey[Report]()


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = config.stash.get(_REPORT, None)
    if state is None:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("task")
        graded = marker is not None and int(marker.args[0]) in state.results
        (keep if graded else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


_LOG = pytest.StashKey[_ErrorLog]()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Once a task has failed, its later checks are skipped: the report shows one
    failure a task, and a lab that is not started yet is graded in seconds."""
    state = item.config.stash.get(_REPORT, None)
    marker = item.get_closest_marker("task")
    if state is None or marker is None:
        return
    result = state.results.get(int(marker.args[0]))
    if result is not None and not result.passed:
        pytest.skip("an earlier check of this task failed")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    handler = _ErrorLog()
    # DBOS and uvicorn log to loggers that do not reach the root.
    loggers = [
        logging.getLogger(),
        logging.getLogger("dbos"),
        logging.getLogger("uvicorn"),
    ]
    for logger in loggers:
        logger.addHandler(handler)
    item.stash[_LOG] = handler
    try:
        return (yield)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report: pytest.TestReport = yield
    state = item.config.stash.get(_REPORT, None)
    marker = item.get_closest_marker("task")
    if state is None or marker is None:
        return report
    result = state.results.get(int(marker.args[0]))
    if result is None:
        return report
    if report.when == "call":
        result.ran += 1
    if not report.failed or not result.passed:
        return report

    result.passed = False
    error = call.excinfo.value if call.excinfo else None
    logged = item.stash[_LOG].messages if _LOG in item.stash else []
    # A learner's exception raised inside the capstone (a workflow step, a route)
    # reaches the test as a status or a timeout; the log holds the real reason.
    unfinished = [m for m in logged if m.startswith("NotImplementedError")]
    result.traceback = str(report.longrepr)
    result.called = _what_the_test_does(item)
    if isinstance(error, LabCheckFailed):
        result.called, result.got = error.called, error.got
        result.expected, result.hint = error.expected, error.hint
        if logged and "Error" not in result.got:
            result.got += f" (the capstone logged: {(unfinished or logged)[-1]})"
    elif isinstance(error, LabFileError):
        result.called, result.got = "loading your file", str(error)
        result.expected = "a file Python can import, with the task's function in it"
    elif unfinished:
        result.got = unfinished[-1]
        result.expected = "the task's function to do its work instead of raising"
    elif error is not None and (
        "Timeout" in type(error).__name__ or str(error).startswith("Timeout")
    ):
        result.got = "no result before the time limit"
        result.expected = "an answer within the limit: look for a loop that never ends"
    elif error is not None:
        result.got = _describe(error)
        result.expected = "the task's function to return without an exception"
    else:
        result.got = f"failed during {report.when}"
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_REPORT, None)
    if state is None:
        return
    for result in state.results.values():
        if result.ran == 0 and result.passed:
            result.passed = False
            result.called, result.got = "the task's checks", "nothing ran"
            result.expected = "the grader's checks to run"
    verbose = session.config.getoption("--lab-verbose")
    print(render(state, verbose))
    path = session.config.getoption("--lab-json")
    if path:
        Path(path).write_text(json.dumps(as_json(state), indent=2))
    failed = any(not r.passed for r in state.results.values())
    session.exitstatus = pytest.ExitCode.TESTS_FAILED if failed else pytest.ExitCode.OK


def as_json(state: Report) -> dict[str, Any]:
    return {
        "lab": state.definition.entry.number,
        "tasks": [
            {
                "id": task.id,
                "title": task.title,
                "passed": state.results[task.id].passed,
                "got": state.results[task.id].got,
            }
            for task in state.definition.tasks
            if task.id in state.results
        ],
    }


def render(state: Report, verbose: bool = False) -> str:
    definition = state.definition
    entry = definition.entry
    where = (
        state.lab_dir.relative_to(REPO)
        if state.lab_dir.is_relative_to(REPO)
        else state.lab_dir
    )
    lines = [f"\nLab {entry.number}: {entry.title}   ({where})\n"]
    graded = [task for task in definition.tasks if task.id in state.results]
    for task in graded:
        result = state.results[task.id]
        label = task.label
        verdict = "pass" if result.passed else "FAIL"
        lines.append(f"{label} {'.' * max(3, 66 - len(label))} {verdict}")
        if result.passed:
            continue
        lines.append(f"  called    {result.called}")
        lines.append(f"  got       {result.got}")
        lines.append(f"  expected  {result.expected}")
        lines.append(f"  hint      {result.hint or task.hint}")
        lines.append(f"  read      {definition.module_text}{task.section}")
        if verbose and result.traceback:
            lines.append("  traceback:\n" + _indent(result.traceback))
    passed = sum(r.passed for r in state.results.values())
    total = len(graded)
    lines.append("")
    if passed == total:
        lines.append(f"All {total} tasks pass.")
    else:
        first = next(t for t in graded if not state.results[t.id].passed)
        lines.append(
            f"{passed} of {total} tasks pass. Next: Task {first.id}. "
            f"(Tracebacks: make lab-{entry.number} V=1)"
        )
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
