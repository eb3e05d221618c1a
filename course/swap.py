"""Put a learner's functions into the running reference capstone, one task at a time.

The grader takes each function a task names from the learner's file, compiles it
against the reference module's globals (plus any imports the learner added), and
puts it wherever the reference function was bound. Everything else stays the
reference, so a task is graded on its own: lab 11's Task 3 does not depend on
Task 1 being done. Only the named functions are taken, never the rest of the file.

    python -m course.swap LAB LAB_DIR TASK -m capstone.runtime [args...]

runs a module (a runner, say) with that task's functions swapped in, for graders
that need a separate process.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import runpy
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from course import labdef
from course.catalog import lab


class LabFileError(Exception):
    """The learner's file cannot be used: it does not parse, or a function is gone."""


def learner_functions(
    path: Path, module_name: str, names: list[str]
) -> dict[str, Callable[..., Any]]:
    reference = importlib.import_module(module_name)
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as error:
        raise LabFileError(
            f"{path.name} line {error.lineno}: {error.msg} (the file does not parse)"
        ) from None
    except FileNotFoundError:
        raise LabFileError(f"{path} is missing") from None

    namespace = dict(vars(reference))
    imports: list[ast.stmt] = [
        node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    try:
        exec(compile(ast.Module(imports, []), str(path), "exec"), namespace)
    except ImportError as error:
        raise LabFileError(f"{path.name}: an import fails: {error}") from None

    definitions: list[ast.stmt] = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name in names
    ]
    missing = set(names) - {
        node.name
        for node in definitions
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    if missing:
        raise LabFileError(f"{path.name} has no function {', '.join(sorted(missing))}")
    exec(compile(ast.Module(definitions, []), str(path), "exec"), namespace)
    return {name: namespace[name] for name in names}


def _rebind(replacements: dict[int, Any]) -> list[tuple[Any, str, Any]]:
    """Replace every binding of the originals in the capstone's loaded modules."""
    undo = []
    for name, module in list(sys.modules.items()):
        if not (name == "capstone" or name.startswith("capstone.")) or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            replacement = replacements.get(id(value))
            if replacement is not None:
                undo.append((module, attribute, value))
                setattr(module, attribute, replacement)
    return undo


@contextlib.contextmanager
def swapped(
    definition: labdef.LabDefinition, lab_dir: Path, task_id: int
) -> Iterator[None]:
    """The reference capstone with one task's functions taken from ``lab_dir``."""
    task = definition.task(task_id)
    replacements: dict[int, Any] = {}
    for qualified in task.functions:
        file_name, function = qualified.split(":")
        item = definition.file(file_name)
        original = getattr(importlib.import_module(item.module), function)
        learner = learner_functions(lab_dir / item.name, item.module, [function])
        replacements[id(original)] = learner[function]
    undo = _rebind(replacements)
    try:
        yield
    finally:
        for module, attribute, value in reversed(undo):
            setattr(module, attribute, value)


def main(argv: list[str]) -> None:
    number, lab_dir, task_id, flag, module, *rest = argv
    if flag != "-m":
        raise SystemExit("usage: python -m course.swap LAB LAB_DIR TASK -m MODULE ...")
    definition = labdef.load(lab(int(number)))
    # Load the whole capstone first, so every binding of the function is replaced.
    importlib.import_module(module)
    with swapped(definition, Path(lab_dir), int(task_id)):
        sys.argv = [module, *rest]
        runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
