"""ConsoleCallback: readable lines, nesting, tokens and cost, plain text off a terminal."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookwire import CallbackManager, LLMResponse, ToolCall, Usage, trace
from hookwire.callbacks import ConsoleCallback
from hookwire.callbacks.console import format_cost
from hookwire.errors import BudgetExceeded, ConfigurationError, RateLimitError
from hookwire.terminal import CONTROL_CHARACTERS


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _session(cb: ConsoleCallback, *, cost: Decimal | None = Decimal("0.00123")) -> None:
    m = CallbackManager([cb])
    with trace("rlm", callbacks=m) as run:
        rid = m.on_llm_start(
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Capital?"}],
            model="gpt-4o",
            stream=True,
        )
        m.on_retry(1, 3, RateLimitError("slow down"), run_id=rid, model="gpt-4o", delay=0.5)
        m.on_llm_end(
            LLMResponse(
                "Paris",
                Usage(12, 34),
                model="gpt-4o",
                cost=cost,
                tool_calls=(ToolCall("c1", "search"),),
            ),
            run_id=rid,
            model="gpt-4o",
            latency_ms=812.0,
            ttft_ms=120.0,
            attempts=2,
        )
        tid = m.on_tool_start("search", {"q": "paris"})
        m.on_tool_end("search", "2.1M people", run_id=tid, latency_ms=12.0)
        m.on_memory_store("Paris is the capital")
        m.on_memory_recall("capital", ["a", "b"])
        m.on_error(ValueError("tool broke"), stage="tool")
        run.output = "Paris"


def test_seed_example_writes_plain_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    _session(ConsoleCallback(verbose=True, show_tokens=True, show_cost=True))
    out, err = capsys.readouterr()
    assert out == ""
    assert "\x1b[" not in err  # not a terminal: no colour codes
    lines = err.splitlines()
    assert lines[0].startswith("▶ rlm")
    assert lines[1] == '  → gpt-4o (stream): "Capital?"'
    assert lines[2].startswith("  ↻ retry 1/3: RateLimitError: slow down (next in 0.50 s)")
    assert lines[3] == (
        "  ← gpt-4o · 812 ms (first token 120 ms) · 2 attempts · tokens 12→34 (46)"
        ' · $0.00123 · calls search: "Paris"'
    )
    assert lines[4] == '    ⚙ search({"q":"paris"})'  # tools one level deeper
    assert lines[5] == '    ✓ search 12 ms: "2.1M people"'
    assert lines[6] == '  ◆ memory store: "Paris is the capital"'
    assert lines[7] == '  ◆ memory recall: "capital" ← 2 results'
    assert lines[8] == "  ✗ error [tool]: ValueError: tool broke"
    assert lines[9].startswith("■ rlm done in ")
    assert lines[9].endswith('· 1 LLM call · tokens 46 · $0.00123: "Paris"')


def test_tokens_and_cost_can_be_hidden_and_unknown_cost_is_a_question_mark() -> None:
    buf = io.StringIO()
    _session(ConsoleCallback(stream=buf, show_tokens=False, show_cost=True), cost=None)
    text = buf.getvalue()
    assert "tokens" not in text
    assert "$?" in text
    assert "$0 " not in text
    buf = io.StringIO()
    _session(ConsoleCallback(stream=buf, show_cost=False))
    assert "$" not in buf.getvalue()


def test_not_verbose_shows_runs_and_errors_only() -> None:
    buf = io.StringIO()
    _session(ConsoleCallback(verbose=False, stream=buf))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("▶ rlm")
    assert "error [tool]" in lines[1]
    assert "1 LLM call" in lines[2]
    assert "tokens 46" in lines[2]


def test_colours_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tty = _Tty()
    _session(ConsoleCallback(stream=tty))
    assert "\x1b[" in tty.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    tty = _Tty()
    _session(ConsoleCallback(stream=tty))
    assert "\x1b[" not in tty.getvalue()


def test_long_text_is_shortened_and_secrets_redacted() -> None:
    buf = io.StringIO()
    cb = ConsoleCallback(stream=buf, max_text=40)
    m = CallbackManager([cb])
    m.on_llm_start("word " * 1000 + "\n" * 50, model="m")
    m.on_llm_start("my key is sk-abcdefghijklmnopqrstuvwxyz0123", model="m")
    m.on_llm_start("[bold red]not markup[/]", model="m")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3
    assert len(lines[0]) < 120
    assert "… (+" in lines[0]
    assert "sk-abc" not in lines[1]
    assert "[REDACTED]" in lines[1]
    assert "[bold red]not markup[/]" in lines[2]


_EVIL = "\x1b[2J\x1b]0;pwned\x07\rforged line\x08\x08\x9b31m\u202eevil\x00"
_SGR = re.compile(r"\x1b\[[0-9;]*m")  # rich's own colours, on a terminal


def _everything(cb: ConsoleCallback, text: str) -> None:
    """Every hook the console prints, with ``text`` in every field a user or model fills."""
    m = CallbackManager([cb])
    with pytest.raises(RuntimeError):
        _hooks(m, text)


def _hooks(m: CallbackManager, text: str) -> None:
    with trace("run" + text, callbacks=m, user_id=text):
        rid = m.on_llm_start([{"role": "user", "content": text}], model=text, stream=True)
        for token in (text, "ok", text):
            m.on_llm_new_token(token, run_id=rid)
        m.on_retry(1, 3, RateLimitError(text), run_id=rid, model=text, delay=0.5)
        m.on_llm_end(
            LLMResponse(text, Usage(1, 2), model=text, tool_calls=(ToolCall("c", text),)),
            run_id=rid,
            model=text,
        )
        m.on_llm_error(RuntimeError(text), run_id=m.on_llm_start(text, model=text), model=text)
        tid = m.on_tool_start(text, {text: text})
        m.on_tool_end(text, text, run_id=tid)
        m.on_tool_error(text, ValueError(text), run_id=m.on_tool_start(text, text))
        m.on_memory_store(text)
        m.on_memory_recall(text, [text])
        m.on_error(ValueError(text), stage=text)
        m.on_budget_exceeded(BudgetExceeded(text))
        raise RuntimeError(text)


def _controls(output: str) -> set[str]:
    return {c for c in _SGR.sub("", output) if c in CONTROL_CHARACTERS and c not in "\n\t"}


def test_console_shows_escape_sequences_carriage_returns_and_backspaces_as_text() -> None:
    buf = io.StringIO()
    _everything(ConsoleCallback(stream=buf, show_stream=True, max_text=400), _EVIL)
    out = buf.getvalue()
    assert _controls(out) == set()
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\rforged line\\x08\\x08\\x9b31m\\u202eevil" in out
    tty = _Tty()
    _everything(ConsoleCallback(stream=tty, show_stream=True, color=True), _EVIL)
    assert "\x1b[3" in tty.getvalue()  # its own colours stay
    assert _controls(tty.getvalue()) == set()


def test_console_keeps_streamed_text_on_one_line_with_its_tabs() -> None:
    buf = io.StringIO()
    m = CallbackManager([ConsoleCallback(stream=buf, show_stream=True, max_text=100)])
    rid = m.on_llm_start("hi", model="m", stream=True)
    for token in ("a\tb", "\n", "c\r\nd", "\re"):
        m.on_llm_new_token(token, run_id=rid)
    m.on_llm_end(LLMResponse("x"), run_id=rid, model="m")
    assert buf.getvalue().splitlines()[1] == "  a\tb c d\\re"


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_property_no_control_character_reaches_the_console(text: str) -> None:
    buf = io.StringIO()
    _everything(ConsoleCallback(stream=buf, show_stream=True), text)
    assert _controls(buf.getvalue()) == set()


def test_failures_and_budgets_are_shown() -> None:
    buf = io.StringIO()
    m = CallbackManager([ConsoleCallback(stream=buf)])

    def failing_run() -> None:
        with trace("agent", callbacks=m):
            m.on_llm_error(RateLimitError("slow"), model="gpt-4o", attempts=3)
            m.on_tool_error("search", ValueError("bad input"))
            m.on_budget_exceeded(BudgetExceeded("user u1 spent $5.00 of $5.00"))
            raise RuntimeError("run failed")

    with pytest.raises(RuntimeError):
        failing_run()
    text = buf.getvalue()
    assert "✗ gpt-4o failed after 3 attempts: RateLimitError: slow" in text
    assert "✗ search failed: ValueError: bad input" in text
    assert "⛔ budget exceeded: user u1 spent $5.00 of $5.00" in text
    assert "agent failed: RuntimeError: run failed" in text


def test_ascii_output_on_a_non_unicode_stream() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    _session(ConsoleCallback(stream=stream))
    stream.flush()
    text = raw.getvalue().decode("ascii")
    assert text.startswith("> rlm")
    assert "-> gpt-4o" in text


def test_format_cost() -> None:
    assert format_cost(None) == "$?"
    assert format_cost(Decimal("0.0012")) == "$0.0012"
    assert format_cost(Decimal("12.5")) == "$12.5"
    assert format_cost(Decimal(0)) == "$0"
    assert format_cost(Decimal("0.00000012")) == "$1.20e-7"
    assert format_cost(Decimal("3"), "EUR") == "3 EUR"
    assert format_cost(None, "EUR") == "? EUR"


def test_bad_options() -> None:
    with pytest.raises(ConfigurationError, match="max_text"):
        ConsoleCallback(max_text=2)


def test_show_stream_shows_tokens_live_shortened_and_marks_retries() -> None:
    buf = io.StringIO()
    cb = ConsoleCallback(stream=buf, show_stream=True, max_text=20)
    m = CallbackManager([cb])
    rid = m.on_llm_start("hi", model="m", stream=True)
    for i, t in enumerate(["Hel", "lo"]):
        m.on_llm_new_token(t, run_id=rid, attempt=1, index=i)
    for i, t in enumerate(["Hello", " there, this is a long answer", " indeed"]):
        m.on_llm_new_token(t, run_id=rid, attempt=2, index=i)
    m.on_llm_end(LLMResponse("Hello there"), run_id=rid, model="m")
    lines = buf.getvalue().splitlines()
    assert lines[1] == "  Hello"
    assert lines[2] == "  (attempt 2) Hello there, this is…"
    assert lines[3].startswith("← m")
    assert not CallbackManager([ConsoleCallback(stream=buf)]).listens("on_llm_new_token")
