"""Put a learner's functions into the running reference capstone, one task at a time.

The grader takes each function a task names from the learner's file, compiles it
against the reference module's globals (plus any imports and helper functions the
learner added), and puts it wherever the reference function was bound. Everything
else stays the reference, so a task is graded on its own: lab 11's Task 3 does not
depend on Task 1 being done. Only the named functions and the learner's own new
helpers are taken, never the learner's version of other reference functions.

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
from course.catalog import REPO, lab


class LabFileError(Exception):
    """The learner's file cannot be used: it does not parse, or a function is gone."""


def learner_functions(
    path: Path, module_name: str, names: list[str]
) -> tuple[dict[str, Callable[..., Any]], dict[str, Any]]:
    """The named functions from the learner's file, compiled against the reference
    module's own globals, and the names the learner's imports add to them."""
    reference = importlib.import_module(module_name)
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as error:
        raise LabFileError(
            f"{path.name} line {error.lineno}: {error.msg} (the file does not parse)"
        ) from None
    except FileNotFoundError:
        raise LabFileError(f"{path} is missing") from None

    imports: list[ast.stmt] = [
        node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    imported: dict[str, Any] = {
        "__name__": module_name,
        "__package__": reference.__package__,
    }
    try:
        exec(compile(ast.Module(imports, []), str(path), "exec"), imported)
    except ImportError as error:
        raise LabFileError(f"{path.name}: an import fails: {error}") from None
    added = {
        key: value
        for key, value in imported.items()
        if not key.startswith("__") and key not in vars(reference)
    }

    # Helpers the learner wrote next to the task's function (a function or class
    # the reference module does not have) come along, so the function can call them.
    helpers: list[ast.stmt] = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.name not in vars(reference)
    ]
    if helpers:
        defined_helpers: dict[str, Any] = {}
        try:
            exec(
                compile(ast.Module(helpers, []), str(path), "exec"),
                {**vars(reference), **added},
                defined_helpers,
            )
        except Exception as error:  # noqa: BLE001 - any failure is the learner's
            raise LabFileError(
                f"{path.name}: defining your helpers fails: {error}"
            ) from None
        added.update(defined_helpers)

    found: dict[str, ast.stmt] = {}
    for name in names:
        # "Class.method" names a method; the rest are module-level functions.
        owner, _, function = name.rpartition(".")
        body = tree.body
        if owner:
            classes = [
                n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner
            ]
            body = classes[0].body if classes else []
        for node in body:
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name == function
            ):
                found[name] = node
    missing = sorted(set(names) - set(found))
    if missing:
        raise LabFileError(f"{path.name} has no function {', '.join(missing)}")

    functions = {}
    for name, node in found.items():
        # The module's real globals: the function sees what the module sees now,
        # including anything a test patches on the module while it runs.
        defined: dict[str, Any] = {}
        exec(
            compile(ast.Module([node], []), str(path), "exec"), vars(reference), defined
        )
        functions[name] = defined[name.rpartition(".")[2]]
    return functions, added


def _rebind(replacements: dict[int, Any]) -> list[tuple[Any, str, Any]]:
    """Replace every binding of the originals in the loaded modules of the
    capstone, the Pulumi stack and the graders."""
    undo = []
    graders = str(REPO / "graders")
    for name, module in list(sys.modules.items()):
        in_capstone = name.partition(".")[0] in ("capstone", "infra")
        in_graders = str(getattr(module, "__file__", "") or "").startswith(graders)
        if module is None or not (in_capstone or in_graders):
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
    methods: list[tuple[type, str, Any]] = []
    additions: list[tuple[Any, str]] = []
    for qualified in task.functions:
        file_name, name = qualified.split(":")
        item = definition.file(file_name)
        module = importlib.import_module(item.module)
        functions, added = learner_functions(lab_dir / item.name, item.module, [name])
        for key, value in added.items():
            setattr(module, key, value)
            additions.append((module, key))
        learner = functions[name]
        owner, _, function = name.rpartition(".")
        if owner:
            cls = getattr(module, owner)
            methods.append((cls, function, cls.__dict__[function]))
            setattr(cls, function, learner)
        else:
            replacements[id(getattr(module, function))] = learner
    undo = _rebind(replacements)
    try:
        yield
    finally:
        for target, attribute, value in reversed(undo):
            setattr(target, attribute, value)
        for cls, function, original in methods:
            setattr(cls, function, original)
        for module, key in additions:
            delattr(module, key)


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
