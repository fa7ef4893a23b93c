"""The seed's agent conversation, scripted: what the model answers at each step.

The question is "Take 3 to the fifth power and multiply that by thirty six, then square the
result". The model asks for ``exponentiate(3, 5)``, then ``multiply(<that>, 36)``, then
``exponentiate(<that>, 2)``, then states the last tool result. Each step reads the real result of
the previous tool call from the conversation, so a wrong tool gives a wrong final answer.
"""

from __future__ import annotations

from typing import Any, Final

QUESTION: Final = "Take 3 to the fifth power and multiply that by thirty six, then square the result"
ANSWER: Final = 76_527_504


def _tool_results(messages: list[dict[str, Any]]) -> list[str]:
    return [str(m.get("content", "")) for m in messages if m.get("role") == "tool"]


def next_step(messages: list[dict[str, Any]]) -> tuple[str, dict[str, int]] | str:
    """The model's next move: ``(tool name, arguments)`` or the final answer text."""
    results = _tool_results(messages)
    if not results:
        return ("exponentiate", {"base": 3, "exponent": 5})
    last = _as_int(results[-1])
    if len(results) == 1:
        return ("multiply", {"first_int": last, "second_int": 36})
    if len(results) == 2:
        return ("exponentiate", {"base": last, "exponent": 2})
    return f"The result is {last:,}."


def _as_int(text: str) -> int:
    try:
        return int(text.strip().replace(",", ""))
    except ValueError:
        return 0
