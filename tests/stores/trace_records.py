"""Log records of small traces, for the trace store's tests (``test_traces``,
``test_trace_spans``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

T0 = 1_790_000_000.0


def rec(event: str, run_id: str, at: float, **kw: Any) -> dict[str, Any]:
    data = kw.pop("data", {})
    return {"v": 1, "event": event, "run_id": run_id, "timestamp": at, **kw, "data": data}


def trace(n: int, at: float, user: str = "u1", model: str = "m1") -> list[dict[str, Any]]:
    """A run ``r<n>`` with one LLM call and one tool call under it."""
    run, llm, tool = f"r{n}", f"r{n}-llm", f"r{n}-tool"
    ctx = {"trace_id": run, "user_id": user, "agent": "bot"}
    child = {**ctx, "parent_run_id": run, "depth": 1}
    return [
        rec("run_start", run, at, name="bot", data={"input": f"question {n}"}, **ctx),
        rec("llm_start", llm, at + 0.1, model=model, data={"prompt": "p"}, **child),
        rec(
            "retry",
            llm,
            at + 0.2,
            data={
                "attempt": 1,
                "max_attempts": 3,
                "error": {"type": "RateLimitError", "message": "429"},
            },
            **child,
        ),
        rec(
            "llm_end",
            llm,
            at + 0.5,
            model=model,
            latency_ms=400.0,
            ttft_ms=50.0,
            data={
                "response": {
                    "content": "answer",
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 2},
                    "cost": "0.001",
                }
            },
            **child,
        ),
        rec(
            "tool_start",
            tool,
            at + 0.6,
            data={"tool_name": "search", "tool_input": {"q": 1}},
            **child,
        ),
        rec(
            "tool_error",
            tool,
            at + 0.7,
            data={"tool_name": "search", "error": {"type": "ConnectionError", "message": "down"}},
            **child,
        ),
        rec(
            "run_end",
            run,
            at + 1.0,
            cost=str(Decimal("0.001") * n),
            model=model,
            data={"output": f"answer {n}"},
            **ctx,
        ),
    ]
