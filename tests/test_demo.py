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
    if "ConsoleCallback" in text.splitlines()[1]:  # the built-in console tells the story
        assert "(stream)" in text  # a streamed answer
        assert "⚙ order_status(" in text  # a tool call
        assert "◆ memory store" in text
        assert "← 1 result" in text or "← 2 results" in text
        assert "↻ retry 1/3: RateLimitError" in text  # a transient failure, retried
        assert "✗ warehouse_stock failed" in text  # a handled error
        assert "✗ error [tool]" in text
    else:
        assert "(streaming)" in text  # a streamed answer
        assert "tool order_status(" in text  # a tool call
        assert "memory stored" in text
        assert "memory recalled 1 item(s)" in text or "memory recalled 2 item(s)" in text
        assert "retry attempt 1/3 failed (RateLimitError)" in text  # a transient failure, retried
        assert "warehouse_stock failed" in text  # a handled error
        assert "error (tool)" in text
    assert "You told me: Hello! My order number is ORD-1042." in text  # recalled from memory
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
    }
