"""Tools the agent may call: typed handlers with a schema and a time limit."""

from __future__ import annotations

import ast
import asyncio
import logging
import math
import operator
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

log = logging.getLogger("capstone.runtime")


class ToolError(Exception):
    """A tool refused its input or failed; the message goes back to the model."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Callable[[dict[str, Any]], Awaitable[str]]

    def spec(self) -> dict[str, Any]:
        """The tool as the Chat Completions API describes it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
MAX_EXPRESSION_CHARS = 200
# Results stay within about 100 digits. Python's integers have no size limit, so
# without a bound a short expression like ((9**64)**64)**64 runs for seconds and
# takes gigabytes, and no timeout can interrupt it: it never yields to the loop.
MAX_RESULT_BITS = 332


def evaluate_arithmetic(expression: str) -> float | int:
    """Evaluate + - * / // % ** and parentheses over real numbers; nothing else.

    The model's arguments are untrusted input, so this walks the syntax tree
    instead of calling ``eval``, and checks every result's size before it is used.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression!r}") from None

    def bounded(value: Any) -> Any:
        if isinstance(value, complex):
            raise ToolError("the result is not a real number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ToolError("the result is too large")
        if abs(value) >= 2**MAX_RESULT_BITS:
            raise ToolError("the result is too large")
        return value

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return bounded(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Pow) and left not in (0, 1, -1):
                # |left| ** right needs about right * log2|left| bits: refuse
                # before computing, not after.
                if right * math.log2(abs(left)) >= MAX_RESULT_BITS:
                    raise ToolError("the result is too large")
            return bounded(_OPERATORS[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return bounded(_OPERATORS[type(node.op)](walk(node.operand)))
        raise ToolError(f"unsupported element in expression: {ast.dump(node)[:40]}")

    try:
        value = walk(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (OverflowError, ValueError):
        raise ToolError("the result is too large") from None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return cast(float | int, value)


async def _calculator(arguments: dict[str, Any]) -> str:
    expression = arguments.get("expression")
    if not isinstance(expression, str):
        raise ToolError("calculator needs a string argument 'expression'")
    return str(evaluate_arithmetic(expression))


CALCULATOR = Tool(
    name="calculator",
    description="Evaluate arithmetic: + - * / // % ** and parentheses.",
    parameters={
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    handler=_calculator,
)

TOOLS: dict[str, Tool] = {tool.name: tool for tool in (CALCULATOR,)}


async def run_tool(name: str, arguments: dict[str, Any], timeout_seconds: float) -> str:
    """Run a registered tool within its time limit; ToolError on any refusal."""
    tool = TOOLS.get(name)
    if tool is None:
        raise ToolError(f"unknown tool {name!r}")
    try:
        return await asyncio.wait_for(tool.handler(arguments), timeout_seconds)
    except TimeoutError:
        raise ToolError(f"{name} did not finish within {timeout_seconds}s") from None
    except ToolError:
        raise
    except Exception:
        # A tool's own bug is reported to the model as a failed call, so the run
        # can go on; the traceback is for the log, not for the model.
        log.exception("tool %s failed", name)
        raise ToolError(f"{name} failed unexpectedly") from None
