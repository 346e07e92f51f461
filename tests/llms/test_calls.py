"""hookwire.llms.calls: a call's state and the arguments of its events."""

from __future__ import annotations

from hookwire.callbacks import BaseCallback
from hookwire.dispatch import CallbackManager
from hookwire.errors import BudgetExceeded, CallbackAbort, RateLimitError
from hookwire.llms.calls import Call, Reading
from hookwire.llms.protocol import LLMRequest, StreamEnd
from hookwire.llms.retry import RetryPolicy

KW = {"run_id": "r1", "model": "m", "provider": "p"}


class Tokens(BaseCallback):
    def on_llm_new_token(self, token: str, **kwargs: object) -> None:
        pass


def make(stream: bool = False, **params: object) -> Call:
    tools = [{"type": "function", "function": {"name": "weather"}}]
    request = LLMRequest([{"role": "user", "content": "hi"}], "m", dict(params), tools)
    managers = (CallbackManager([Tokens()]), CallbackManager([]))
    listening = managers[:1] if stream else ()  # what BaseLLM._prepare finds
    return Call(request, managers, stream, dict(KW), RetryPolicy(max_attempts=3), listening)


def test_invocation_params_name_the_model_known_parameters_and_tools() -> None:
    call = make(temperature=0, api_secret="x")
    assert call.invocation_params() == {"model": "m", "temperature": 0, "tools": ["weather"]}


def test_an_abort_before_the_start_and_a_budget() -> None:
    call = make()
    budget = BudgetExceeded("over", scope="user")
    events = call.aborted(budget)
    assert [e[0] for e in events] == ["on_llm_error", "on_budget_exceeded", "on_error"]
    assert events[0][2] == {**KW, "attempts": 0}
    assert events[2][2] == {"stage": "budget", **KW}
    assert [e[0] for e in call.aborted(CallbackAbort("no"))] == ["on_llm_error", "on_error"]


def test_failure_and_retry_events() -> None:
    call = make()
    call.t0, call.attempts = 1.0, 2
    error = RateLimitError("slow down")
    failed = call.failed(error)
    assert [e[0] for e in failed] == ["on_llm_error", "on_error"]
    assert failed[0][2]["attempts"] == 2 and failed[1][2] == {"stage": "llm", **KW}
    assert call.retrying(1, error, 0.5) == [("on_retry", (1, 3, error), {"delay": 0.5, **KW})]


def test_reading_keeps_tokens_and_yields_only_new_text_after_a_retry() -> None:
    call = make(stream=True)
    first = Reading(call)
    assert [first.take("ab"), first.take(""), first.take("cd")] == [0, None, 1]
    assert [first.new_text("ab"), first.new_text("cd")] == ["ab", "cd"]
    again = Reading(call)  # a retried attempt starts from the beginning
    assert again.new_text("abc") is None and again.new_text("de") == "e"
    end = StreamEnd("stop")
    assert again.take(end) is None and again.end is end
    assert call.ttft is not None
