"""mask_pii: e-mails, Luhn-valid card numbers and phone numbers are masked, other numbers
stay; ``mask=`` and the process-wide default; and every built-in handler that lets content
out masks prompts, answers, tool inputs and outputs and error messages with it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire import CallbackManager, trace
from hookwire.callbacks import ConsoleCallback, FileLogCallback, TraceStoreCallback
from hookwire.errors import ConfigurationError
from hookwire.events import LLMResponse, Usage
from hookwire.export import OutboxCallback
from hookwire.masking import (
    Masker,
    default_mask,
    luhn_ok,
    mask_pii,
    masked_redactor,
    masked_text,
    resolve_mask,
    set_default_mask,
)
from hookwire.stores import runner


def _with_check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError


def test_examples() -> None:
    text = "mail jane.doe+x@example.co.uk, card 4111 1111 1111 1111, call +1 415-555-0100"
    assert mask_pii(text) == "mail [EMAIL], card [CARD], call [PHONE]"
    assert (
        mask_pii("order 4111111111111112 of 2026-12-07") == "order 4111111111111112 of 2026-12-07"
    )
    assert mask_pii("(415) 555-0100") == "[PHONE]"
    assert mask_pii("42 tokens, run 1733570000") == "42 tokens, run 1733570000"
    assert Masker(emails=False)("a@b.io") == "a@b.io"


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_luhn_valid_card_numbers_are_masked(body: str) -> None:
    number = _with_check_digit(body)
    grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    for form in (number, grouped):
        assert "[CARD]" in mask_pii(f"pay with {form} now")
        assert number not in mask_pii(f"pay with {form} now").replace(" ", "")


@given(st.from_regex(r"[a-z][a-z0-9._]{0,15}@[a-z]{1,10}\.(com|org|io)", fullmatch=True))
def test_emails_are_masked(address: str) -> None:
    assert mask_pii(f"write to {address}.") == "write to [EMAIL]."


@given(st.text())
def test_masking_is_idempotent(text: str) -> None:
    once = mask_pii(text)
    assert mask_pii(once) == once


def _luhn_reference(number: str) -> bool:
    digits = [int(d) for d in number]
    odd = digits[-1::-2]
    even = [sum(divmod(2 * d, 10)) for d in digits[-2::-2]]
    return (sum(odd) + sum(even)) % 10 == 0


@given(st.text(alphabet="0123456789", min_size=1, max_size=24))
def test_luhn_agrees_with_the_reference(number: str) -> None:
    assert luhn_ok(number) == _luhn_reference(number)


@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.data())
def test_a_card_number_with_one_digit_wrong_is_not_masked(body: str, data: st.DataObject) -> None:
    number = _with_check_digit(body)
    i = data.draw(st.integers(0, len(number) - 1))
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != number[i]]))
    typo = number[:i] + wrong + number[i + 1 :]
    assert not luhn_ok(typo)
    assert mask_pii(f"order {typo} shipped") == f"order {typo} shipped"


def test_phone_numbers() -> None:
    for phone in ("+44 20 7946 0958", "+1 (415) 555-0100", "415.555.0100", "+33612345678"):
        assert mask_pii(f"call {phone} today") == "call [PHONE] today", phone
    for other in ("version 1.2.3", "2026-12-07", "id 4155550100", "3 + 4 = 7"):
        assert mask_pii(other) == other


def test_mask_settings_and_the_process_wide_default() -> None:
    assert resolve_mask(True) is mask_pii and resolve_mask(False) is None
    assert resolve_mask(None) is None and resolve_mask(str.upper) is str.upper
    with pytest.raises(ConfigurationError, match="mask"):
        resolve_mask("yes")  # type: ignore[arg-type]
    set_default_mask(True)
    try:
        assert default_mask() is mask_pii and resolve_mask(None) is mask_pii
        assert resolve_mask(False) is None
        assert masked_text()("a@b.io key sk-abcdefghijklmnopqrstuvwxyz") == "[EMAIL] key [REDACTED]"
    finally:
        set_default_mask(None)
    assert masked_text()("a@b.io") == "a@b.io"
    red = masked_redactor([r"secret-\w+"], mask_pii)
    assert red.walk({"a": ["x@y.io secret-1"]}) == {"a": ["[EMAIL] [REDACTED]"]}


# -- every handler that lets content out --------------------------------------------------------

_EMAIL, _CARDNO, _PHONE = "jane.doe@example.com", "4111 1111 1111 1111", "+1 415-555-0100"
_KEY = "sk-abcdefghijklmnopqrstuvwxyz123456"


def _exported_text(name: str, tmp: Path, **kw: Any) -> tuple[str, Any]:
    """Run one trace with personal data in every kind of content through the handler
    ``name`` and return all the text it let out."""
    otel: Any = None
    if name == "filelog":
        handler: Any = FileLogCallback(tmp / "log.jsonl", **kw)
    elif name == "console":
        handler = ConsoleCallback(stream=io.StringIO(), color=False, max_text=400, **kw)
    elif name == "outbox":
        handler = OutboxCallback(["s"], f"sqlite+aiosqlite:///{tmp}/o.db", **kw)
    elif name == "trace_store":
        handler = TraceStoreCallback(f"sqlite+aiosqlite:///{tmp}/t.db", **kw)
    else:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from hookwire.callbacks.otel import OpenTelemetryCallback

        provider = TracerProvider()
        otel = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(otel))
        handler = OpenTelemetryCallback(
            tracer_provider=provider, capture_content=True, content_event=True, **kw
        )
    manager = CallbackManager([handler])
    with trace("turn", callbacks=manager, input=f"I am {_EMAIL}"):
        rid = manager.on_llm_start([{"role": "user", "content": f"my card is {_CARDNO}"}])
        manager.on_llm_end(LLMResponse(f"I will call {_PHONE}", Usage(1, 1)), run_id=rid)
        tid = manager.on_tool_start("crm", {"email": _EMAIL})
        manager.on_tool_end("crm", f"found {_PHONE}", run_id=tid)
        rid = manager.on_llm_start("again")
        manager.on_llm_error(RuntimeError(f"401 for {_EMAIL} with key {_KEY}"), run_id=rid)
        tid = manager.on_tool_start("pay", f"charge {_CARDNO}")
        manager.on_tool_error("pay", ValueError(f"card {_CARDNO} declined"), run_id=tid)
    handler.flush()
    if name == "filelog":
        text = handler.log_path.read_text()
    elif name == "console":
        text = handler.console.file.getvalue()
    elif name == "outbox":
        text = "\n".join(str(r["body"]) for r in runner.run_sync(handler.store.rows()))
    elif name == "trace_store":
        store = handler.store
        parts = []
        for run in runner.run_sync(store.runs()).items:
            kids = runner.run_sync(store.children(run["trace_id"], run["span_id"])).items
            for span in (run, *kids):
                parts.append(str(runner.run_sync(store.span(span["span_id"]))))
        text = "\n".join(parts)
    else:
        parts = []
        for span in otel.get_finished_spans():
            parts += [str(dict(span.attributes or {})), str(span.status.description)]
            parts += [str(dict(e.attributes or {})) for e in span.events]
        text = "\n".join(parts)
    manager.close()
    return text, handler


@pytest.mark.parametrize("name", ["filelog", "console", "outbox", "trace_store", "otel"])
def test_every_handler_masks_prompts_answers_tool_io_and_errors(name: str, tmp_path: Path) -> None:
    raw, _ = _exported_text(name, tmp_path / "raw")
    # Without a mask the content goes out (secrets never do).
    assert _EMAIL in raw and _KEY not in raw
    text, _ = _exported_text(name, tmp_path / "masked", mask=True)
    for personal in (_EMAIL, _CARDNO, _PHONE, _KEY):
        assert personal not in text, (name, personal)
    assert "[EMAIL]" in text and "[CARD]" in text and "[REDACTED]" in text
    if name != "console":  # the console shows a tool's input, not every answer
        assert "[PHONE]" in text


@pytest.mark.parametrize("name", ["filelog", "otel"])
def test_the_default_mask_reaches_handlers_built_after_it(name: str, tmp_path: Path) -> None:
    set_default_mask(mask_pii)
    try:
        text, _ = _exported_text(name, tmp_path / "default")
        opted_out, _ = _exported_text(name, tmp_path / "off", mask=False)
    finally:
        set_default_mask(None)
    assert _EMAIL not in text and "[EMAIL]" in text
    assert _EMAIL in opted_out
