"""What a grader says when a check fails: what was called, what came back, what
was expected, and a hint. Never the reference answer itself."""

from __future__ import annotations

from typing import Any


class LabCheckFailed(AssertionError):
    def __init__(self, called: str, got: str, expected: str, hint: str = "") -> None:
        super().__init__(f"called {called}; got {got}; expected {expected}")
        self.called = called
        self.got = got
        self.expected = expected
        self.hint = hint


def check(
    condition: Any, *, called: str, got: Any, expected: str, hint: str = ""
) -> None:
    if not condition:
        raise LabCheckFailed(called, _short(got), expected, hint)


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
