"""BaseLLM: the plain (generator-free) path of a call that does not stream, and _finish."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from hookwire import LLMResponse, Usage
from hookwire.errors import RateLimitError
from hookwire.events import ToolCall
from hookwire.llms import base as llm_base
from hookwire.llms.base import BaseLLM, LLMRequest
from hookwire.llms.retry import RetryPolicy
from hookwire.testing import RecordingCallback

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


@pytest.fixture
def priced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_base, "_pricing", [lambda model, usage, provider=None: Decimal("0.25")])


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
