"""One hook table: a hook declared here, in a test module, is dispatched, logged and exported.

The hooks below exist only while a test uses their fixture: ``declare_hook`` returns the
function that removes them, so no other test sees them.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from hookwire import CallbackManager, events
from hookwire.callbacks import FileLogCallback, OpenTelemetryCallback
from hookwire.callbacks.base import AsyncBaseCallback, BaseCallback
from hookwire.errors import ConfigurationError
from hookwire.events import (
    HOOKS,
    Event,
    HookSpec,
    declare_hook,
    event_from_call,
    on_hook_declared,
    remove_hook,
)
from hookwire.logschema import EVENT_NAMES, parse_line, to_line
from hookwire.testing import RecordingCallback


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardrailEvent(Event):
    """A guardrail checked ``text`` against ``rule`` and gave ``verdict``."""

    name: ClassVar[str] = "guardrail"
    hook: ClassVar[str] = "on_guardrail"
    rule: str = ""
    text: Any = None
    verdict: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RerankEvent(Event):
    """A reranker started on ``query``."""

    name: ClassVar[str] = "rerank"
    hook: ClassVar[str] = "on_rerank_start"
    query: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RerankEndEvent(Event):
    """A reranker returned ``documents`` (or failed with ``error``)."""

    name: ClassVar[str] = "rerank_end"
    hook: ClassVar[str] = "on_rerank_end"
    documents: Any = None
    error: BaseException | None = None


GUARDRAIL = HookSpec(
    "on_guardrail",
    GuardrailEvent,
    ("rule", "text", "verdict"),
    prompts=("text",),
    responses=("verdict",),
)
RERANK = (
    HookSpec("on_rerank_start", RerankEvent, ("query",), starts_run=True, prompts=("query",)),
    HookSpec(
        "on_rerank_end",
        RerankEndEvent,
        ("documents", "error"),
        ends_run=True,
        responses=("documents",),
    ),
)


@pytest.fixture
def guardrail() -> Iterator[HookSpec]:
    remove = declare_hook(GUARDRAIL)
    yield GUARDRAIL
    remove()


@pytest.fixture
def rerank() -> Iterator[tuple[HookSpec, HookSpec]]:
    removers = [declare_hook(spec) for spec in RERANK]
    yield RERANK
    for remove in removers:
        remove()


class Guard(BaseCallback):
    def __init__(self) -> None:
        self.got: list[tuple[Any, ...]] = []
        self.events: list[Event] = []

    def on_guardrail(self, rule: str, text: Any, verdict: Any, **kwargs: Any) -> None:
        self.got.append((rule, text, verdict, kwargs.get("user_id")))

    def on_event(self, event: Event) -> None:
        self.events.append(event)


H = TypeVar("H")


def fresh(cls: type[H]) -> type[H]:
    """A subclass of ``cls`` that no manager has seen yet.

    Managers cache what they build per shape of handler set (the handlers' classes); until
    dispatch forgets that cache when a hook is declared (the xfail test below), a class
    a manager saw before the declaration would not get the new hook.
    """
    return type(cls.__name__, (cls,), {})


def _lines(path: Path) -> list[dict[str, Any]]:
    return [parse_line(line) for line in path.read_bytes().splitlines()]


def _otel(**kw: Any) -> tuple[OpenTelemetryCallback, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handler = fresh(OpenTelemetryCallback)(tracer_provider=provider, metrics=False, **kw)
    return handler, exporter, provider


# -- the table ----------------------------------------------------------------------------------


def test_a_declared_hook_is_in_the_table_and_on_both_base_classes(guardrail: HookSpec) -> None:
    assert HOOKS["on_guardrail"] is guardrail
    assert list(HOOKS)[-1] == "on_guardrail"
    sync, coro = BaseCallback.on_guardrail, AsyncBaseCallback.on_guardrail
    assert sync.__hookwire_noop__ and coro.__hookwire_noop__
    assert inspect.iscoroutinefunction(coro) and not inspect.iscoroutinefunction(sync)
    assert list(inspect.signature(sync).parameters) == ["self", "rule", "text", "verdict", "kwargs"]
    assert sync.__doc__ == "A guardrail checked ``text`` against ``rule`` and gave ``verdict``."
    assert sync.__qualname__ == "BaseCallback.on_guardrail"
    assert guardrail.content == ("text", "verdict")
    assert EVENT_NAMES["on_guardrail"] == "guardrail"


def test_removing_a_hook_undoes_everything_derived_from_it() -> None:
    remove = declare_hook(GUARDRAIL)
    remove()
    remove()  # a second call does nothing
    assert "on_guardrail" not in HOOKS and "on_guardrail" not in EVENT_NAMES
    for cls in (BaseCallback, AsyncBaseCallback, FileLogCallback, OpenTelemetryCallback):
        assert not hasattr(cls, "on_guardrail"), cls
    assert not hasattr(RecordingCallback, "on_guardrail")
    declare_hook(GUARDRAIL)()  # and it can be declared again


def test_listeners_hear_declarations_and_removals() -> None:
    heard: list[tuple[str, bool]] = []

    @on_hook_declared
    def listen(spec: HookSpec) -> None:
        heard.append((spec.name, spec.name in HOOKS))

    try:
        declare_hook(GUARDRAIL)()
    finally:
        events._LISTENERS.remove(listen)
    assert heard == [("on_guardrail", True), ("on_guardrail", False)]


def test_mistakes_are_named(guardrail: HookSpec) -> None:
    with pytest.raises(ConfigurationError, match="already declared"):
        declare_hook(guardrail)
    with pytest.raises(ConfigurationError, match="cannot be removed"):
        remove_hook("on_llm_end")
    with pytest.raises(ConfigurationError, match="no hook named on_nothing"):
        remove_hook("on_nothing")
    with pytest.raises(ConfigurationError, match="equal its record's hook"):
        HookSpec("on_guard", GuardrailEvent, ("rule",))
    with pytest.raises(ConfigurationError, match="not fields of GuardrailEvent"):
        HookSpec("on_guardrail", GuardrailEvent, ("rules",))
    with pytest.raises(ConfigurationError, match="not among its args"):
        HookSpec("on_guardrail", GuardrailEvent, ("rule",), prompts=("text",))
    with pytest.raises(ConfigurationError, match="both start and end"):
        HookSpec("on_guardrail", GuardrailEvent, (), starts_run=True, ends_run=True)
    with pytest.raises(ConfigurationError, match="not a hook"):
        Guard().ignore_hooks("on_nothing")


def test_the_builtin_table_says_what_starts_and_ends_runs_and_what_is_content() -> None:
    starts = {h for h, s in HOOKS.items() if s.starts_run}
    assert starts == {"on_run_start", "on_llm_start", "on_embedding_start", "on_tool_start"}
    ends = {h for h, s in HOOKS.items() if s.ends_run}
    assert ends == {
        "on_run_end",
        "on_llm_end",
        "on_llm_error",
        "on_embedding_end",
        "on_embedding_error",
        "on_tool_end",
        "on_tool_error",
    }
    assert [h for h, s in HOOKS.items() if s.streamed] == ["on_llm_new_token"]
    prompts = {a for s in HOOKS.values() for a in s.prompts}
    responses = {a for s in HOOKS.values() for a in s.responses}
    assert prompts == {"prompt", "tool_input", "content", "query", "input"}
    assert responses == {"response", "token", "tool_output", "results", "output"}


# -- dispatch -----------------------------------------------------------------------------------


def test_dispatched_to_a_handler_through_the_manager(guardrail: HookSpec) -> None:
    handler, recorder = fresh(Guard)(), fresh(RecordingCallback)()
    manager = CallbackManager([handler, recorder])
    assert manager.listens("on_guardrail")
    manager.on_guardrail("no-pii", "my card is 4111", "blocked", user_id="u1")
    assert handler.got == [("no-pii", "my card is 4111", "blocked", "u1")]
    (event,) = handler.events
    assert isinstance(event, GuardrailEvent)
    assert event.payload() == {"rule": "no-pii", "text": "my card is 4111", "verdict": "blocked"}
    assert event.user_id == "u1" and event.run_id
    (call,) = recorder.of("guardrail")
    assert call.args == {"rule": "no-pii", "text": "my card is 4111", "verdict": "blocked"}


async def test_dispatched_to_an_async_handler(guardrail: HookSpec) -> None:
    got: list[str] = []

    class AsyncGuard(AsyncBaseCallback):
        async def on_guardrail(self, rule: str, text: Any, verdict: Any, **kw: Any) -> None:
            await asyncio.sleep(0)
            got.append(verdict)

    manager = CallbackManager([fresh(AsyncGuard)()])
    await manager.aon_guardrail("r", "t", "allowed")
    assert got == ["allowed"]


def test_a_manager_without_listeners_accepts_the_hook(guardrail: HookSpec) -> None:
    assert CallbackManager([]).on_guardrail("r", "t", "v") is None
    assert CallbackManager([Guard()]).aon_guardrail is not None


def test_a_shape_seen_before_the_declaration_gets_the_hook() -> None:
    seen = fresh(RecordingCallback)
    CallbackManager([seen()])
    remove = declare_hook(GUARDRAIL)
    try:
        recorder = seen()
        CallbackManager([recorder]).on_guardrail("r", "t", "v")
        assert recorder.hooks() == ["on_guardrail"]
    finally:
        remove()


def test_a_declared_start_hook_returns_its_run_id(rerank: tuple[HookSpec, HookSpec]) -> None:
    manager = CallbackManager([fresh(RecordingCallback)()])
    run_id = manager.on_rerank_start("q")
    assert isinstance(run_id, str) and run_id
    assert manager.on_rerank_start("q", run_id="given") == "given"


def test_the_typed_record_of_a_declared_hook(guardrail: HookSpec) -> None:
    event = event_from_call("on_guardrail", ("r", "t"), {"run_id": "1", "timestamp": 0.0, "x": 1})
    assert isinstance(event, GuardrailEvent)
    assert (event.rule, event.text, event.verdict, event.extra) == ("r", "t", None, {"x": 1})


# -- FileLogCallback ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompts", "responses", "data"),
    [
        (True, True, {"rule": "no-pii", "text": "my card", "verdict": "blocked"}),
        (False, True, {"rule": "no-pii", "verdict": "blocked"}),
        (True, False, {"rule": "no-pii", "text": "my card"}),
        (False, False, {"rule": "no-pii"}),
    ],
)
def test_logged_by_filelog_with_its_content_switches(
    guardrail: HookSpec, tmp_path: Path, prompts: bool, responses: bool, data: dict[str, Any]
) -> None:
    path = tmp_path / "log.jsonl"
    log = fresh(FileLogCallback)(path, include_prompts=prompts, include_responses=responses)
    manager = CallbackManager([log])
    manager.on_guardrail("no-pii", "my card", "blocked", run_id="r1", user_id="u1")
    log.on_guardrail("no-pii", "my card", verdict="blocked", run_id="r2", timestamp=1.0)
    manager.close()
    first, second = _lines(path)
    assert first["event"] == second["event"] == "guardrail"
    assert first["run_id"] == "r1" and first["user_id"] == "u1"
    assert second["run_id"] == "r2" and "verdict" not in second
    assert first["data"] == second["data"] == data


def test_to_line_writes_a_declared_hooks_record(guardrail: HookSpec) -> None:
    event = GuardrailEvent(run_id="r", timestamp=2.0, rule="x", text="t", verdict="v")
    rec = orjson.loads(to_line(event, include_prompts=False))
    assert rec["event"] == "guardrail" and rec["data"] == {"rule": "x", "verdict": "v"}


# -- OpenTelemetryCallback ----------------------------------------------------------------------


@pytest.mark.parametrize("capture", [False, True])
def test_exported_by_otel_as_a_span_event(guardrail: HookSpec, capture: bool) -> None:
    handler, exporter, provider = _otel(capture_content=capture)
    manager = CallbackManager([handler])
    run_id = manager.on_run_start("hi", name="agent")
    manager.on_guardrail("no-pii", "my card", "blocked", parent_run_id=run_id)
    manager.on_guardrail("no-pii", "x", ValueError("bad"), parent_run_id=run_id)
    manager.on_run_end("done", run_id=run_id)
    (span,) = exporter.get_finished_spans()
    first, second = span.events
    assert first.name == second.name == "hookwire.guardrail"
    expected = {"hookwire.rule": "no-pii"}
    if capture:
        expected |= {"hookwire.text": "my card", "hookwire.verdict": "blocked"}
    assert dict(first.attributes or {}) == expected
    assert (second.attributes or {})["error.type"] == "ValueError"
    provider.shutdown()


def test_exported_by_otel_as_a_span_from_start_to_end(rerank: tuple[HookSpec, HookSpec]) -> None:
    handler, exporter, provider = _otel()
    manager = CallbackManager([handler])
    manager.on_run_start("hi", run_id="run", name="agent")
    manager.on_rerank_start("which?", run_id="a", parent_run_id="run")
    manager.on_rerank_end(["d1", "d2"], None, run_id="a")
    manager.on_rerank_start("again", run_id="b", parent_run_id="run")
    manager.on_rerank_end(None, TimeoutError("slow"), run_id="b")
    manager.on_run_end("done", run_id="run")
    ok, failed, run = exporter.get_finished_spans()
    assert ok.name == failed.name == "rerank"
    assert ok.parent is not None and ok.parent.span_id == run.context.span_id
    assert "hookwire.query" not in (ok.attributes or {})
    assert "hookwire.documents" not in (ok.attributes or {})
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "TimeoutError"
    provider.shutdown()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkEvent(Event):
    """A streamed chunk of a transcript."""

    name: ClassVar[str] = "chunk"
    hook: ClassVar[str] = "on_chunk"
    chunk: str = ""


def test_a_streamed_hook_is_skipped_by_observers_unless_asked(tmp_path: Path) -> None:
    remove = declare_hook(HookSpec("on_chunk", ChunkEvent, ("chunk",), streamed=True))
    try:
        quiet = fresh(FileLogCallback)(tmp_path / "a.jsonl")
        loud = fresh(FileLogCallback)(tmp_path / "b.jsonl", include_tokens=True)
        otel, exporter, provider = _otel()
        manager = CallbackManager([quiet, loud, otel])
        run_id = manager.on_run_start("hi")
        manager.on_chunk("c", parent_run_id=run_id)
        manager.on_run_end("done", run_id=run_id)
        manager.close()
        assert [r["event"] for r in _lines(tmp_path / "a.jsonl")] == ["run_start", "run_end"]
        assert [r["event"] for r in _lines(tmp_path / "b.jsonl")] == [
            "run_start",
            "chunk",
            "run_end",
        ]
        (span,) = exporter.get_finished_spans()
        assert not span.events and OpenTelemetryCallback.on_chunk.__hookwire_noop__
        provider.shutdown()
    finally:
        remove()
