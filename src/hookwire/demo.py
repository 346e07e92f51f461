"""The demo behind ``hookwire demo``: a short support conversation that shows every kind of event.

Offline by default, on ``LocalLLM``: a streamed answer, a tool call, a memory store and recall,
a transient failure and its retry, and a tool error that is handled. With ``--model`` (and
``--base-url`` / ``--api-key``, or the ``OPENAI_*`` environment variables) the same
conversation runs against a real OpenAI-compatible endpoint.

Whichever built-in observers are installed are switched on (console, metrics, JSONL file log,
chat history, accounting); without a console handler a small built-in printer shows the
events. Files go under ``--dir`` (default ``./hookwire-demo``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from .callbacks.base import BaseCallback
from .dispatch import CallbackManager
from .llms import LLM, LocalLLM, OpenAIClient
from .memory import SQLiteMemory
from .tools import Tool, tool

__all__ = ["CONVERSATION", "build_observers", "run_demo"]

CONVERSATION: tuple[str, ...] = (
    "Hello! My order number is ORD-1042.",
    "What is the order status of ORD-1042?",
    "Can I still get a refund?",
    "Please check the warehouse stock for ORD-1042.",
    "Which order number did I give you?",
)

_RULES = (
    (r"my order number is (\S+?)\.?$", "Thanks! I have noted your order number, {0}."),
    (r"refund", "Yes: refunds are possible within 30 days of delivery, from your account page."),
    (r"which order|my order number|what was my order", "You told me: {memory}"),
)


@tool
def order_status(order_id: str) -> str:
    """Look up the delivery status of an order.

    Args:
        order_id: the order number, like ORD-1042.
    """
    return f"{order_id}: shipped on Monday, arriving Thursday"


@tool
def warehouse_stock(order_id: str) -> str:
    """Check the warehouse stock for the items of an order.

    Args:
        order_id: the order number, like ORD-1042.
    """
    raise ConnectionError("the warehouse service is not answering (demo failure)")


class _Printer(BaseCallback):
    """Short event lines, for when no console handler is installed."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self._streaming = False
        self._attempt = 1
        self._shown = False

    def _line(self, text: str) -> None:
        if self._streaming:
            self.out.write("\n")
            self._streaming = False
        self.out.write(text + "\n")
        self.out.flush()

    def on_run_start(self, input: Any, **kw: Any) -> None:
        self._line(f"\n> [{kw.get('name', 'run')}] user: {input}")

    def on_run_end(self, output: Any, **kw: Any) -> None:
        usage = kw.get("usage")
        tokens = f", {usage.total_tokens} tokens" if usage is not None else ""
        cost = f", ${kw['cost']}" if kw.get("cost") is not None else ""
        status = f"failed: {kw['error']}" if kw.get("error") else f"done{tokens}{cost}"
        self._line(f"< [{kw.get('name', 'run')}] {status}")

    def on_llm_start(self, prompt: Any, **kw: Any) -> None:
        mode = "streaming" if kw.get("stream") else "json"
        self._line(f"  llm  {kw.get('provider')}/{kw.get('model')} ({mode})")
        self._attempt = 1
        self._shown = False

    def on_llm_new_token(self, token: str, **kw: Any) -> None:
        if not self._streaming:
            self.out.write("       ")
            self._streaming = True
        if kw.get("attempt", 1) != self._attempt:
            self._attempt = kw.get("attempt", 1)
            if self._shown:  # a retried stream starts again from the beginning
                self.out.write("\n       (retry) ")
        self._shown = True
        self.out.write(token)
        self.out.flush()

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        calls = ", ".join(c.name for c in response.tool_calls)
        what = f"asks for tool {calls}" if calls else f"{response.usage.total_tokens} tokens"
        self._line(f"  llm  done in {kw.get('latency_ms', 0):.1f} ms: {what}")

    def on_tool_start(self, tool_name: str, tool_input: Any, **kw: Any) -> None:
        self._line(f"  tool {tool_name}({tool_input})")

    def on_tool_end(self, tool_name: str, tool_output: Any, **kw: Any) -> None:
        self._line(f"  tool {tool_name} -> {tool_output}")

    def on_tool_error(self, tool_name: str, error: BaseException, **kw: Any) -> None:
        self._line(f"  tool {tool_name} failed: {error} (the model is told)")

    def on_memory_store(self, content: Any, **kw: Any) -> None:
        self._line(f"  memory stored: {str(content).splitlines()[0][:70]}")

    def on_memory_recall(self, query: Any, results: Any, **kw: Any) -> None:
        self._line(f"  memory recalled {len(results)} item(s)")

    def on_retry(self, attempt: int, max_attempts: int, error: BaseException, **kw: Any) -> None:
        self._line(
            f"  retry attempt {attempt}/{max_attempts} failed ({type(error).__name__}); "
            f"next in {kw.get('delay', 0):.2f}s"
        )

    def on_error(self, error: BaseException, **kw: Any) -> None:
        self._line(f"  error ({kw.get('stage', '?')}): {type(error).__name__}: {error}")


def build_observers(
    directory: Path,
    *,
    user_id: str = "demo-user",
    org_id: str = "demo-org",
    out: Any = None,
) -> tuple[list[Any], list[str]]:
    """The built-in observers that are installed, configured for the demo, and notes on the
    ones that are not (looked up lazily: each is built on its own branch of hookwire)."""
    from . import callbacks

    database_url = f"sqlite+aiosqlite:///{directory / 'hookwire.db'}"
    specs: list[tuple[str, dict[str, Any]]] = [
        (
            "ConsoleCallback",
            # The demo's whole story goes to one stream (the console's default is stderr).
            {
                "verbose": True,
                "show_tokens": True,
                "show_cost": True,
                "show_stream": True,
                "stream": out,
            },
        ),
        ("MetricsCallback", {}),
        (
            "FileLogCallback",
            {
                "log_path": str(directory / "hookwire.jsonl"),
                "include_prompts": True,
                "include_responses": True,
            },
        ),
        (
            "ChatHistoryCallbackHandler",
            {
                "user_data": {
                    "user_id": user_id,
                    "details": {"given_name": "Demo", "family_name": "User"},
                    "org_id": org_id,
                },
                "realm": "main",
                "agent_title": "Support Agent",
                "database_url": database_url,
            },
        ),
        (
            "AccountingCallbackHandler",
            {
                "correlation_id": "demo-correlation",
                "request_id": "demo-request",
                "user_id": user_id,
                "database_url": database_url,
            },
        ),
        ("TraceStoreCallback", {"database_url": database_url}),
    ]
    found: list[Any] = []
    notes: list[str] = []
    for name, kwargs in specs:
        try:
            cls = getattr(callbacks, name)
        except (ImportError, AttributeError):
            notes.append(f"{name}: not in this build")
            continue
        try:
            found.append(cls(**kwargs))
        except Exception as exc:  # an observer that cannot start must not stop the demo
            notes.append(f"{name}: not started ({type(exc).__name__}: {exc})")
    return found, notes


def _make_llm(model: str | None, base_url: str | None, api_key: str | None) -> LLM:
    if model or base_url:
        return OpenAIClient(
            api_key=api_key, base_url=base_url, model=model or "gpt-4o-mini", max_retries=2
        )
    # The offline model costs nothing; a demo price (gpt-4o-mini's order of magnitude) is set
    # for it, so the demo shows costs flowing to the console, the metrics and the ledger.
    from .pricing import set_price

    set_price("local-support", provider="local", input_mtok="0.15", output_mtok="0.60")
    return LocalLLM("local-support", rules=_RULES, token_delay=0.01)


async def _converse(agent: Any, llm: LLM, out: Any) -> int:
    from .agents import ConversationAgent

    assert isinstance(agent, ConversationAgent)
    try:
        for i, text in enumerate(CONVERSATION):
            if i == 2 and isinstance(llm, LocalLLM):
                llm.fail(1, "rate_limit")  # the next call meets a 429 and is retried
            try:
                result = await agent.process_message(text)
            except Exception as exc:  # a real endpoint may refuse; report it and go on
                out.write(f"\n  (turn failed: {type(exc).__name__}: {exc})\n")
                continue
            out.write(f"  assistant: {result}\n")
    finally:
        if isinstance(llm, OpenAIClient):
            await llm.aclose()  # in the loop that opened its connections
    return len(agent.turns) // 2


def run_demo(
    directory: str | os.PathLike[str] = "hookwire-demo",
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    out: Any = None,
) -> int:
    """Run the demo conversation; returns the number of turns answered."""
    from .agents import ConversationAgent

    out = out or sys.stdout
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    observers, notes = build_observers(path, out=out)
    if not any(type(o).__name__ == "ConsoleCallback" for o in observers):
        observers.insert(0, _Printer(out))
    manager = CallbackManager(observers)
    llm = _make_llm(model, base_url, api_key)
    memory = SQLiteMemory(path / "memory.sqlite", namespace="demo-user")
    memory.clear()
    tools: list[Tool] = [order_status, warehouse_stock]
    agent = ConversationAgent(
        name="Support Agent",
        llm=llm,
        callbacks=manager,
        tools=tools,
        memory=memory,
        conversation_id=None,
        user_id="demo-user",
        org_id="demo-org",
    )
    where = "offline, LocalLLM" if isinstance(llm, LocalLLM) else f"{llm.provider}/{llm.model}"
    out.write(f"hookwire demo ({where}); files in {path}\n")
    out.write("observers: " + ", ".join(type(o).__name__ for o in observers) + "\n")
    for note in notes:
        out.write(f"  ({note})\n")
    try:
        answered = asyncio.run(_converse(agent, llm, out))
    finally:
        manager.flush()
        manager.close()
        memory.close()
    for o in observers:
        get_metrics = getattr(o, "get_metrics", None)
        if callable(get_metrics):
            m = get_metrics()
            out.write(
                f"\nmetrics: {m.get('total_calls')} LLM calls, {m.get('total_tokens')} tokens, "
                f"{m.get('avg_latency_ms')} ms average\n"
            )
    out.write(f"\n{answered} turns answered. Files: ")
    out.write(", ".join(sorted(p.name for p in path.iterdir())) + "\n")
    if any(type(o).__name__ == "TraceStoreCallback" for o in observers):
        database = (path / "hookwire.db").resolve()
        out.write(
            f"\nSee it in the dashboard: hookwire ui --db sqlite:///{database} "
            "--budget user=0.01/day\n"
        )
    return answered
