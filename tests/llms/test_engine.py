"""BaseLLM (hookwire.llms.engine): a call that does not stream, a streamed call whose tokens
are not delivered (read through the provider's _stream_into), and _finish."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from hookwire import LLMResponse, Usage
from hookwire.callbacks import BaseCallback
from hookwire.errors import (
    CallbackAbort,
    HandlerError,
    LLMConnectionError,
    RateLimitError,
)
from hookwire.events import ToolCall
from hookwire.llms import prices as llm_prices
from hookwire.llms.engine import BaseLLM
from hookwire.llms.protocol import LLMRequest, StreamEnd
from hookwire.llms.retry import RetryPolicy
from hookwire.testing import RecordingCallback
from request_editor import RequestEditor

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


class Bare(BaseLLM):
    """A client whose answers leave provider, model and cost to BaseLLM."""

    provider = "bare"

    def __init__(self, answer: LLMResponse, fail_first: int = 0, **kw: Any) -> None:
        super().__init__(model="m-1", **kw)
        self.answer = answer
        self.fail_first = fail_first

    def _complete(self, request: LLMRequest) -> LLMResponse:
        if self.fail_first:
            self.fail_first -= 1
            raise RateLimitError("slow down", provider="bare", retry_after=0)
        return self.answer

    async def _acomplete(self, request: LLMRequest) -> LLMResponse:
        return self._complete(request)


def _answer(**kw: Any) -> LLMResponse:
    return LLMResponse(
        content="hi",
        usage=Usage(prompt_tokens=3, completion_tokens=2, cached_tokens=1),
        created_at=CREATED,
        finish_reason="length",
        tool_calls=(ToolCall(id="c1", name="f", arguments="{}"),),
        id="resp-1",
        currency="EUR",
        **kw,
    )


class Tokens(BaseCallback):
    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        pass


def test_only_a_streamed_call_has_token_listeners() -> None:
    llm = Bare(_answer(), callbacks=[Tokens()])
    assert llm._prepare("q", None, None, None, False, {}).token_managers == ()
    call = llm._prepare("q", None, None, None, True, {})
    assert call.stream and len(call.token_managers) == 1
    # stream=None streams when a handler listens for tokens, and only then
    call = llm._prepare("q", None, None, None, None, {})
    assert call.stream and len(call.token_managers) == 1
    call = Bare(_answer(), callbacks=[BaseCallback()])._prepare("q", None, None, None, None, {})
    assert not call.stream and call.token_managers == ()


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        llm_prices, "_pricing", [lambda model, usage, provider=None: Decimal("0.25")]
    )


def test_finish_fills_the_blanks_and_keeps_every_other_field(priced: None) -> None:
    answer = _answer()
    got = Bare(answer).generate("x")
    assert got == dataclasses.replace(answer, provider="bare", model="m-1", cost=Decimal("0.25"))


def test_finish_keeps_what_the_client_set(priced: None) -> None:
    answer = _answer(provider="p", model="m-2", cost=Decimal("1"))
    assert Bare(answer).generate("x") is answer


def test_finish_keeps_a_subclass_of_the_response(priced: None) -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Mine(LLMResponse):
        extra: str = "kept"

    answer = Mine(content="hi", extra="still here")
    got = Bare(answer).generate("x")
    assert type(got) is Mine and got.extra == "still here"
    assert (got.provider, got.model, got.cost) == ("bare", "m-1", Decimal("0.25"))


def test_a_call_that_does_not_stream_emits_the_same_events_with_retries() -> None:
    rec = RecordingCallback()
    llm = Bare(_answer(), fail_first=1, retry=RetryPolicy(max_attempts=2, initial=0, jitter=0))
    got = llm.generate("x", callbacks=[rec], stream=False)
    assert got.content == "hi"
    assert rec.hooks() == ["on_llm_start", "on_retry", "on_llm_end"]
    end = rec.of("llm_end")[0]
    assert end["attempts"] == 2 and end["stream"] is False


def test_a_call_that_does_not_stream_reports_its_final_failure() -> None:
    rec = RecordingCallback()
    llm = Bare(_answer(), fail_first=5, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(RateLimitError):
        llm.generate("x", callbacks=[rec], stream=False)
    assert rec.hooks() == ["on_llm_start", "on_llm_error", "on_error"]


async def test_the_async_plain_path_matches(priced: None) -> None:
    rec = RecordingCallback()
    got = await Bare(_answer()).agenerate("x", callbacks=[rec], stream=False)
    assert got.cost == Decimal("0.25") and got.provider == "bare"
    assert rec.hooks() == ["on_llm_start", "on_llm_end"]


# -- the plain path of a streamed call whose tokens are not delivered ------------------------------

_VOLATILE = {"run_id", "timestamp", "latency_ms", "ttft_ms"}


class Scripted(BaseLLM):
    """A streaming client whose attempts are scripted: tokens, a StreamEnd, or an exception."""

    provider = "scripted"

    def __init__(self, *attempts: list[Any], **kw: Any) -> None:
        super().__init__(model="m-1", **kw)
        self.attempts = list(attempts)

    def _stream(self, request: LLMRequest) -> Any:
        for item in self.attempts.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item


class Raises(BaseCallback):
    """Raises ``error`` on the token numbered ``at`` (asking for it to reach the caller)."""

    raise_error = True

    def __init__(self, error: BaseException, at: int = 1) -> None:
        self.error = error
        self.at = at
        self.seen = 0

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.seen += 1
        if self.seen == self.at + 1:
            raise self.error


def _events(rec: RecordingCallback) -> list[tuple[Any, ...]]:
    """The recorded events without what differs between two calls (ids, times, objects'
    identity): hook, payload (responses and errors by their content) and keywords."""
    out: list[tuple[Any, ...]] = []
    for c in rec.calls:
        args = {}
        for k, v in c.args.items():
            if isinstance(v, LLMResponse):
                v = (v.content, v.usage, v.model, v.finish_reason, v.provider, v.cost)
            elif isinstance(v, BaseException):
                v = (type(v), str(v), getattr(v, "partial", None))
            args[k] = v
        kw = {k: v for k, v in c.kwargs.items() if k not in _VOLATILE}
        if isinstance(kw.get("error"), BaseException):
            kw["error"] = (type(kw["error"]), str(kw["error"]))
        out.append((c.hook, args, kw))
    return out


def _both(
    make: Callable[[], BaseLLM], *handlers: Callable[[], Any]
) -> tuple[tuple[Any, list[tuple[Any, ...]]], tuple[Any, list[tuple[Any, ...]]]]:
    """``generate`` (the plain path) and ``stream`` (the generator path) on fresh clients and
    handlers: each one's outcome (the response's fields, or the exception) and its events."""
    results = []
    for plain in (True, False):
        rec = RecordingCallback()
        llm = make()
        callbacks = [rec, *(h() for h in handlers)]
        outcome: Any
        try:
            if plain:
                got = llm.generate("x", callbacks=callbacks, stream=True)
            else:
                got = list(llm.stream("x", callbacks=callbacks))[-1]
            outcome = (got.content, got.usage, got.model, got.finish_reason, got.cost)
        except BaseException as exc:  # compared below
            outcome = (type(exc), str(exc), getattr(exc, "partial", None))
        results.append((outcome, _events(rec)))
    return results[0], results[1]


FAST = RetryPolicy(max_attempts=3, initial=0, jitter=0)
END = StreamEnd("stop", Usage(3, 2))


@pytest.mark.parametrize(
    "attempts",
    [
        [["He", "", "llo", END]],
        [["He", "llo"]],  # no StreamEnd: interrupted
        [["He", StreamEnd(None)]],  # no finish_reason: interrupted
        [["He", LLMConnectionError("reset")], ["Hel", "lo", END]],
        [[RateLimitError("slow", retry_after=0)], ["Hi", END]],
        [["He", RuntimeError("bug")]],  # a provider's own bug: an unexpected LLMError
        [["a", LLMConnectionError("x")], ["b", LLMConnectionError("y")], ["c", END]],
        [["a", LLMConnectionError("x")]] * 3,
    ],
)
def test_plain_streamed_path_matches_the_generator_path(
    attempts: list[list[Any]], priced: None
) -> None:
    plain, generator = _both(lambda: Scripted(*attempts, retry=FAST))
    assert plain == generator
    assert plain[1][0][0] == "on_llm_start"


@pytest.mark.parametrize(
    "error",
    [ValueError("handler"), CallbackAbort("stop"), LLMConnectionError("from a handler")],
)
def test_plain_streamed_path_passes_handler_errors_unchanged(error: BaseException) -> None:
    attempts = [["a", "b", "c", END]] * 3
    plain, generator = _both(lambda: Scripted(*attempts, retry=FAST), lambda: Raises(error))
    assert plain == generator
    # A refusal reaches the caller as itself; any other error of a handler that asks to
    # raise as HandlerError, caused by it (even one that looks like a provider's: it is not
    # taken for a stream cut and retried).
    llm = Scripted(*attempts, retry=RetryPolicy(max_attempts=1))
    with pytest.raises((CallbackAbort, HandlerError)) as info:
        llm.generate("x", callbacks=[Raises(error)], stream=True)
    got = info.value
    if isinstance(error, CallbackAbort):
        assert got is error
        assert got.__context__ is None and got.__cause__ is None
    else:
        assert isinstance(got, HandlerError) and got.error is error and got.__cause__ is error
        assert got.hook == "on_llm_new_token" and error.__context__ is None


def test_plain_streamed_path_is_taken_and_reads_the_providers_stream_into() -> None:
    seen: list[str] = []

    class Into(Scripted):
        def _stream_into(self, request: LLMRequest, on_token: Any) -> StreamEnd | None:
            seen.append("into")
            return super()._stream_into(request, on_token)

    rec = RecordingCallback()
    got = Into(["a", "b", END]).generate("x", callbacks=[rec], stream=True)
    assert got.content == "ab" and seen == ["into"]
    tokens = rec.of("llm_new_token")
    assert [(t["token"], t["attempt"], t["index"]) for t in tokens] == [("a", 1, 0), ("b", 1, 1)]
    assert rec.of("llm_end")[0]["stream"] is True


async def test_a_handler_cannot_change_the_request_sent_to_the_model(
    openai_server: Any,
) -> None:
    from hookwire.llms import OpenAIClient

    editor = RequestEditor()
    client = OpenAIClient(api_key="sk-test", base_url=openai_server.base_url, callbacks=[editor])
    messages = [{"role": "user", "content": "hello"}]
    stop = ["\n\n"]
    client.generate(messages, model="gpt-4o-mini", stop=stop)
    await client.agenerate(messages, model="gpt-4o-mini", stop=stop)
    assert editor.refused == ["content", "message", "params"] * 2
    for body in openai_server.requests:
        assert body["messages"] == [{"role": "user", "content": "hello"}]
        assert body["stop"] == ["\n\n"]
    assert messages == [{"role": "user", "content": "hello"}] and stop == ["\n\n"]


# -- a call stopped from outside ---------------------------------------------------------------


class Hangs(BaseLLM):
    """A client whose answer never comes (async), or whose stream goes on forever (sync)."""

    provider = "hangs"

    def __init__(self, **kw: Any) -> None:
        super().__init__(model="m-1", **kw)
        self.asked = asyncio.Event()

    async def _acomplete(self, request: LLMRequest) -> LLMResponse:
        self.asked.set()
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    def _stream(self, request: LLMRequest) -> Any:
        while True:
            yield "token "

    async def _astream(self, request: LLMRequest) -> Any:
        while True:
            yield "token "


async def test_a_cancelled_async_call_ends_with_on_llm_error() -> None:
    # A client that disconnects: the web framework cancels the request's task.
    rec = RecordingCallback()
    llm = Hangs(callbacks=[rec])
    task = asyncio.create_task(llm.agenerate("x", stream=False))
    await llm.asked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rec.hooks() == ["on_llm_start", "on_llm_error"]  # nothing failed: no on_error
    error = rec.of("llm_error")[0]
    assert isinstance(error["error"], asyncio.CancelledError)
    assert error["run_id"] == rec.of("llm_start")[0]["run_id"]


async def test_a_call_cancelled_during_its_budget_check_ends_with_on_llm_error() -> None:
    checking = asyncio.Event()

    class SlowCheck(BaseCallback):
        async def aon_llm_start(self, prompt: Any, **kwargs: Any) -> None:
            checking.set()
            await asyncio.Event().wait()

    rec = RecordingCallback()
    task = asyncio.create_task(Hangs(callbacks=[rec, SlowCheck()]).agenerate("x"))
    await checking.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rec.hooks() == ["on_llm_start", "on_llm_error"]


def test_a_stream_the_caller_closes_ends_with_what_it_was_sent_as_estimated_usage() -> None:
    # The server bills the prompt and what it streamed: the call ends with the partial answer
    # (cancelled, no made-up finish reason) and an estimate, never as if nothing was spent.
    rec = RecordingCallback()
    tokens = Hangs(callbacks=[rec]).stream("x")
    assert next(tokens) == "token "
    tokens.close()  # the caller stopped reading
    hooks = rec.hooks()
    assert (hooks[0], hooks[-1], "on_llm_error" in hooks) == ("on_llm_start", "on_llm_end", False)
    (end,) = rec.of("llm_end")
    assert end["cancelled"] is True and end["stream"] is True
    response = end["response"]
    assert response.content.startswith("token ") and response.finish_reason is None
    assert response.usage.estimated and response.usage.completion_tokens >= 1
    assert response.usage.prompt_tokens >= 1


async def test_an_async_stream_the_caller_closes_ends_at_once_with_what_it_was_sent() -> None:
    rec = RecordingCallback()
    tokens = Hangs(callbacks=[rec]).astream("x")
    assert await tokens.__anext__() == "token "
    await tokens.aclose()  # the caller stopped reading (a client that went away)
    hooks = rec.hooks()
    assert (hooks[0], hooks[-1], "on_llm_error" in hooks) == ("on_llm_start", "on_llm_end", False)
    (end,) = rec.of("llm_end")
    assert end["cancelled"] is True and end["response"].usage.estimated


# -- response_metadata: what the provider said about how it served the call ----------------------

SERVED = {"system_fingerprint": "fp_1", "service_tier": "flex"}


@pytest.mark.parametrize("how", ["generate", "generate-streamed", "stream", "agenerate"])
def test_a_providers_response_metadata_reaches_on_llm_end_as_keywords(how: str) -> None:
    # The call's own keywords win over a name the provider repeats.
    meta = {**SERVED, "attempts": "not this"}
    head = StreamEnd(None, None, "m-2", "r-1", (), {"service_tier": "early"})
    end = StreamEnd("stop", Usage(3, 2), "m-2", "r-1", (), meta)
    rec = RecordingCallback()
    if how == "generate" or how == "agenerate":
        llm: BaseLLM = Bare(_answer(response_metadata=meta), callbacks=[rec])
    else:
        llm = Scripted([head, "He", "llo", end], callbacks=[rec])
    if how == "generate":
        response = llm.generate("x", stream=False)
    elif how == "agenerate":
        response = asyncio.run(llm.agenerate("x", stream=False))
    elif how == "generate-streamed":
        response = llm.generate("x", stream=True)
    else:
        response = list(llm.stream("x"))[-1]  # type: ignore[assignment]
    assert dict(response.response_metadata) == meta  # the last StreamEnd's
    (ended,) = rec.of("llm_end")
    assert {k: ended[k] for k in SERVED} == SERVED
    assert ended["attempts"] == 1


def test_a_stopped_stream_keeps_the_metadata_of_its_early_end() -> None:
    head = StreamEnd(None, None, "m-2", "r-1", (), SERVED)
    rec = RecordingCallback()
    items = Scripted([head, "He", "llo", END], callbacks=[rec]).stream("x")
    assert next(items) == "He"
    items.close()  # type: ignore[attr-defined]
    (ended,) = rec.of("llm_end")
    assert ended["cancelled"] is True and ended["response"].id == "r-1"
    assert {k: ended[k] for k in SERVED} == SERVED


def test_response_metadata_is_read_only_and_left_out_of_the_hash() -> None:
    given = dict(SERVED)
    r = LLMResponse("x", response_metadata=given)
    given["service_tier"] = "changed"
    assert r.response_metadata == SERVED
    with pytest.raises(TypeError):
        r.response_metadata["x"] = "y"  # type: ignore[index]
    assert hash(r) == hash(dataclasses.replace(r, response_metadata={}))
    assert LLMResponse("x").response_metadata == {} and "response_metadata" not in (
        LLMResponse("x").to_dict()
    )
