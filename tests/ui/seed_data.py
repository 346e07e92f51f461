"""What the UI tests share: a seeded database's records, and a dashboard served on 127.0.0.1
(any free port). The fixtures that use them are in ``conftest.py``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from hookwire.stores.traces import TraceStore
from hookwire.ui.api import DashboardApi
from hookwire.ui.server import DashboardServer
from hookwire.ui.spend import parse_budget


@dataclass
class Seeded:
    url: str
    user: str
    runs: list[str]  # newest first
    conversation: str
    store: TraceStore


def trace_records(run: str, at: float, user: str, *, fail: bool = False) -> list[dict[str, Any]]:
    """A run with an LLM call (retried once) and a tool call (failing when ``fail``)."""
    ctx = {"trace_id": run, "user_id": user, "agent": "support", "org_id": "acme"}
    child = {**ctx, "parent_run_id": run, "depth": 1}
    llm, tool = f"{run}-llm", f"{run}-tool"
    return [
        {"v": 1, "event": "run_start", "run_id": run, "timestamp": at, "name": "Support Agent",
         "data": {"input": f"question of {run}"}, **ctx},
        {"v": 1, "event": "llm_start", "run_id": llm, "timestamp": at + 0.01, "model": "gpt-4o",
         "data": {"prompt": [{"role": "user", "content": "where is my order?"}]}, **child},
        {"v": 1, "event": "retry", "run_id": llm, "timestamp": at + 0.02,
         "data": {"attempt": 1, "max_attempts": 3,
                  "error": {"type": "RateLimitError", "message": "429"}}, **child},
        {"v": 1, "event": "llm_end", "run_id": llm, "timestamp": at + 0.3, "model": "gpt-4o",
         "latency_ms": 290.0, "ttft_ms": 40.0, **child,
         "data": {"response": {"content": f"answer of {run}", "cost": "0.002",
                  "usage": {"prompt_tokens": 20, "completion_tokens": 10}}}},
        {"v": 1, "event": "tool_start", "run_id": tool, "timestamp": at + 0.31, **child,
         "data": {"tool_name": "order_status", "tool_input": {"order": 42}}},
        {"v": 1, "event": "tool_error" if fail else "tool_end", "run_id": tool,
         "timestamp": at + 0.4, "latency_ms": 90.0, **child,
         "data": {"tool_name": "order_status", "error": {"type": "ConnectionError",
                  "message": "down"}} if fail else {"tool_name": "order_status",
                  "tool_output": "shipped"}},
        {"v": 1, "event": "run_end", "run_id": run, "timestamp": at + 0.5, "cost": "0.002",
         "model": "gpt-4o", "data": {"output": f"answer of {run}"}, **ctx},
    ]  # fmt: skip


def serve(url: str, token: str | None = None, host: str = "127.0.0.1") -> DashboardServer:
    """A dashboard server on ``url``, serving in a thread (shut it down after)."""
    api = DashboardApi(url, [parse_budget("user=0.05/month"), parse_budget("org:acme=1/day")])
    server = DashboardServer(api, host, 0, token)
    threading.Thread(target=server.serve_forever, name="dashboard", daemon=True).start()
    return server
