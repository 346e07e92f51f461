"""One turn of an app under a fault, shared by the fault tests that time it."""

from __future__ import annotations

import time

from hookwire import CallbackManager
from hookwire.events import LLMResponse, Usage


def turn(manager: CallbackManager, i: int) -> float:
    """Turn ``i``: a run around an LLM call through ``manager``; the seconds it took."""
    started = time.monotonic()
    run_id = manager.on_run_start(f"question {i}")
    llm = manager.on_llm_start(f"question {i}", model="gpt-4o", parent_run_id=run_id)
    response = LLMResponse(f"answer {i}", usage=Usage(12, 7), model="gpt-4o")
    manager.on_llm_end(response, run_id=llm, model="gpt-4o", parent_run_id=run_id)
    manager.on_run_end(f"answer {i}", run_id=run_id)
    return time.monotonic() - started
