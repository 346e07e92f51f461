"""Hook sequences the integration tests expect of an app's turn, whichever framework runs it."""

from __future__ import annotations

#: An agent's run in which the model asks for one tool, gets its result and answers.
TOOL_TURN = [
    "on_run_start",
    "on_llm_start",
    "on_llm_end",
    "on_tool_start",
    "on_tool_end",
    "on_llm_start",
    "on_llm_end",
    "on_run_end",
]
