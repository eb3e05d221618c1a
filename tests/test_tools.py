"""The calculator: untrusted arguments, bounded work, refusals the model can read."""

import time

import httpx
import pytest

from capstone.runtime.tools import ToolError, evaluate_arithmetic
from tests.conftest import Stack
from tests.helpers import all_events, start_run, wait_final


@pytest.mark.parametrize(
    ("expression", "value"),
    [("12 * (3 + 4)", 84), ("7 / 2", 3.5), ("2 ** -3", 0.125), ("(-2) ** 3", -8)],
)
def test_arithmetic(expression: str, value: float) -> None:
    assert evaluate_arithmetic(expression) == value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("1 / 0", "division by zero"),
        ("(0 - 8) ** 0.5", "not a real number"),
        ("((((9 ** 64) ** 64) ** 64) ** 64)", "too large"),
        ("(10.0 ** 64) ** 64", "too large"),
        ("((9 ** 64) ** 64) ** 2", "too large"),
        ("1e308 * 10", "too large"),
        ("__import__('os').system('true')", "unsupported"),
        ("x + 1", "unsupported"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 201, "longer than"),
    ],
)
def test_refusals_are_quick_and_explained(expression: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(ToolError, match=reason):
        evaluate_arithmetic(expression)
    assert time.monotonic() - started < 0.1


async def test_a_refused_calculation_still_completes_the_run(
    stack: Stack, session_id: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        execution_id = await start_run(client, session_id, "r", "What is (0-8)**0.5?")
        view = await wait_final(client, execution_id)
        events = await all_events(client, execution_id)
    assert view["status"] == "completed", view
    results = [e["event"] for e in events if e["event"]["type"] == "tool_result"]
    assert len(results) == 1 and "not a real number" in results[0]["error"]
    assert "error" in view["answer"]
