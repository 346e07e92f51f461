"""The demo conversation, offline on LocalLLM, with whichever observers are installed."""

from __future__ import annotations

import io
from pathlib import Path

from hookwire.demo import CONVERSATION, build_observers, run_demo


def test_demo_offline_shows_every_kind_of_event(tmp_path: Path) -> None:
    out = io.StringIO()
    answered = run_demo(tmp_path / "demo", out=out)
    text = out.getvalue()
    assert answered == len(CONVERSATION)
    assert "offline, LocalLLM" in text
    # What shows a streamed answer, a tool call, a memory store and recall, a transient
    # failure retried, a handled error: in the built-in console's words, or the demo's own.
    console = "ConsoleCallback" in text.splitlines()[1]
    shown = [
        ("(stream)",) if console else ("(streaming)",),
        ("⚙ order_status(",) if console else ("tool order_status(",),
        ("◆ memory store",) if console else ("memory stored",),
        ("← 1 result", "← 2 results")
        if console
        else ("memory recalled 1 item(s)", "memory recalled 2 item(s)"),
        ("↻ retry 1/3: RateLimitError",)
        if console
        else ("retry attempt 1/3 failed (RateLimitError)",),
        ("✗ warehouse_stock failed",) if console else ("warehouse_stock failed",),
        ("✗ error [tool]",) if console else ("error (tool)",),
    ]
    for either in shown:
        assert any(words in text for words in either), either
    assert "You told me: Hello! My order number is ORD-1042." in text  # recalled from memory
    assert "See it in the dashboard: hookwire ui --db sqlite:///" in text
    assert (tmp_path / "demo" / "memory.sqlite").exists()


def test_observers_are_looked_up_lazily(tmp_path: Path) -> None:
    found, notes = build_observers(tmp_path)
    names = {type(o).__name__ for o in found} | {n.split(":")[0] for n in notes}
    assert names == {
        "ConsoleCallback",
        "MetricsCallback",
        "FileLogCallback",
        "ChatHistoryCallbackHandler",
        "AccountingCallbackHandler",
        "TraceStoreCallback",
    }
