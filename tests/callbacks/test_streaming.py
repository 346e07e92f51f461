"""StreamingCallback: tokens in order, once each across retries; async iterators."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookwire import CallbackManager, LLMResponse, trace
from hookwire.callbacks import StreamingCallback
from hookwire.callbacks.streaming import STREAM_RESET
from hookwire.errors import ConfigurationError, StreamInterrupted


def _recording() -> tuple[CallbackManager, list[str], list[int]]:
    """A manager with a StreamingCallback that records its tokens and resets."""
    got: list[str] = []
    resets: list[int] = []
    return (
        CallbackManager([StreamingCallback(on_token=got.append, on_reset=resets.append)]),
        got,
        resets,
    )


def _stream(m: CallbackManager, rid: str, tokens: list[str], attempt: int = 1) -> None:
    for i, t in enumerate(tokens):
        m.on_llm_new_token(t, run_id=rid, attempt=attempt, index=i)


def test_seed_example_prints_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    def print_token(token: str) -> None:
        print(token, end="", flush=True)

    callback = StreamingCallback(on_token=print_token)
    m = CallbackManager([callback])
    rid = m.on_llm_start("hi", stream=True)
    _stream(m, rid, ["Hel", "lo", ", ", "world"])
    m.on_llm_end(LLMResponse("Hello, world"), run_id=rid)
    assert capsys.readouterr().out == "Hello, world"


def test_a_retried_stream_is_not_replayed() -> None:
    m, got, resets = _recording()
    rid = m.on_llm_start("hi", stream=True)
    _stream(m, rid, ["Hel", "lo"], attempt=1)
    m.on_retry(1, 3, StreamInterrupted("cut", partial="Hello"), run_id=rid)
    _stream(m, rid, ["He", "llo wor", "ld"], attempt=2)  # different token boundaries
    m.on_llm_end(LLMResponse("Hello world"), run_id=rid)
    assert got == ["Hel", "lo", " wor", "ld"]
    assert "".join(got) == "Hello world"
    assert resets == []


def test_a_retry_that_says_something_else_resets() -> None:
    m, got, resets = _recording()
    rid = m.on_llm_start("hi", stream=True)
    _stream(m, rid, ["Hello", " there"], attempt=1)
    _stream(m, rid, ["Hello", " friend", "!"], attempt=2)
    assert resets == [2]
    assert got == ["Hello", " there", "Hello friend", "!"]


def test_a_late_token_of_an_old_attempt_is_dropped() -> None:
    got: list[str] = []
    m = CallbackManager([StreamingCallback(on_token=got.append)])
    _stream(m, "r", ["a"], attempt=2)
    _stream(m, "r", ["zzz"], attempt=1)
    assert got == ["a"]


def test_concurrent_calls_are_kept_apart() -> None:
    got: list[str] = []
    m = CallbackManager([StreamingCallback(on_token=got.append)])
    m.on_llm_new_token("A1", run_id="a", attempt=1, index=0)
    m.on_llm_new_token("B1", run_id="b", attempt=1, index=0)
    m.on_llm_new_token("A2", run_id="a", attempt=2, index=0)  # a restarts, b does not
    m.on_llm_new_token("B2", run_id="b", attempt=1, index=1)
    # a's second attempt says something else: it is delivered afresh; b is untouched
    assert got == ["A1", "B1", "A2", "B2"]


def test_concurrent_restart_only_affects_its_call() -> None:
    got: list[str] = []
    m = CallbackManager([StreamingCallback(on_token=got.append)])
    m.on_llm_new_token("same", run_id="a", attempt=1, index=0)
    m.on_llm_new_token("B1", run_id="b", attempt=1, index=0)
    m.on_llm_new_token("same", run_id="a", attempt=2, index=0)
    m.on_llm_new_token("B2", run_id="b", attempt=1, index=1)
    assert got == ["same", "B1", "B2"]


async def test_async_on_token_is_awaited_in_order() -> None:
    got: list[str] = []

    async def on_token(token: str) -> None:
        await asyncio.sleep(0)
        got.append(token)

    m = CallbackManager([StreamingCallback(on_token=on_token)])
    rid = await m.aon_llm_start("hi")
    for i, t in enumerate("abcdef"):
        await m.aon_llm_new_token(t, run_id=rid, attempt=1, index=i)
    assert got == list("abcdef")


def test_async_on_token_from_sync_code() -> None:
    got: list[str] = []

    async def on_token(token: str) -> None:
        got.append(token)

    m = CallbackManager([StreamingCallback(on_token=on_token)])
    _stream(m, "r", list("xyz"))
    assert got == ["x", "y", "z"]


async def test_iterator_for_a_web_handler_ends_with_the_call() -> None:
    cb = StreamingCallback()
    m = CallbackManager([cb])
    stream = cb.stream()

    def produce() -> None:  # a sync runner on another thread
        rid = m.on_llm_start("hi", stream=True)
        _stream(m, rid, ["data", " ", "flows"])
        m.on_llm_end(LLMResponse("data flows"), run_id=rid)
        # a later call is not part of this stream
        rid2 = m.on_llm_start("again", stream=True)
        _stream(m, rid2, ["other"])

    producer = asyncio.get_running_loop().run_in_executor(None, produce)
    events = [f"data: {tok}\n\n" async for tok in stream]
    await producer
    assert events == ["data: data\n\n", "data:  \n\n", "data: flows\n\n"]
    assert stream.text == "data flows"
    assert stream.error is None


async def test_iterator_ends_when_the_call_fails() -> None:
    cb = StreamingCallback()
    m = CallbackManager([cb])
    stream = cb.stream()
    rid = await m.aon_llm_start("hi", stream=True)
    await m.aon_llm_new_token("part", run_id=rid, attempt=1, index=0)
    err = StreamInterrupted("connection dropped")
    await m.aon_llm_error(err, run_id=rid)
    assert [t async for t in stream] == ["part"]
    assert stream.error is err
    assert [t async for t in stream] == []  # ended for good


async def test_iterator_signals_a_reset() -> None:
    cb = StreamingCallback()
    m = CallbackManager([cb])
    stream = cb.stream()
    await m.aon_llm_start("hi", run_id="r")
    await m.aon_llm_new_token("Yes", run_id="r", attempt=1, index=0)
    await m.aon_llm_new_token("No", run_id="r", attempt=2, index=0)
    await m.aon_llm_end(LLMResponse("No"), run_id="r")
    tokens = [t async for t in stream]
    assert tokens == ["Yes", STREAM_RESET, "No"]
    assert tokens[1] is STREAM_RESET
    assert tokens[1] == ""
    assert stream.text == "No"


async def test_iterator_until_run_spans_calls() -> None:
    cb = StreamingCallback()
    m = CallbackManager([cb])
    stream = cb.stream(until="run")

    async def run() -> None:
        async with trace("rlm", callbacks=m):
            for answer in ("first ", "second"):
                rid = await m.aon_llm_start("q")
                await m.aon_llm_new_token(answer, run_id=rid, attempt=1, index=0)
                await m.aon_llm_end(LLMResponse(answer), run_id=rid)

    task = asyncio.create_task(run())
    assert [t async for t in stream] == ["first ", "second"]
    await task


async def test_iterator_can_be_closed_early() -> None:
    cb = StreamingCallback()
    m = CallbackManager([cb])
    stream = cb.stream(run_id="r")
    await m.aon_llm_new_token("a", run_id="r", attempt=1, index=0)
    await stream.aclose()
    await m.aon_llm_new_token("b", run_id="r", attempt=1, index=1)
    assert [t async for t in stream] == ["a"]
    assert cb._streams == []


def test_many_threads_each_call_in_order() -> None:
    got: dict[str, list[str]] = {}
    lock = threading.Lock()

    def on_token(token: str) -> None:
        call, _, i = token.partition(":")
        with lock:
            got.setdefault(call, []).append(i)

    m = CallbackManager([StreamingCallback(on_token=on_token)])

    def work(c: int) -> None:
        for i in range(300):
            m.on_llm_new_token(f"c{c}:{i};", run_id=f"c{c}", attempt=1, index=i)

    threads = [threading.Thread(target=work, args=(c,)) for c in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v == [f"{i};" for i in range(300)] for v in got.values())


def test_bad_arguments() -> None:
    with pytest.raises(ConfigurationError, match="on_token"):
        StreamingCallback(on_token="print")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="on_reset"):
        StreamingCallback(on_reset=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="until"):
        StreamingCallback().stream(until="forever")  # type: ignore[arg-type]


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points) if text[a:b]]


@settings(max_examples=200, deadline=None)
@given(
    answer=st.text(min_size=1, max_size=60),
    cut=st.integers(min_value=0, max_value=60),
    cuts1=st.lists(st.integers(min_value=0, max_value=60), max_size=8),
    cuts2=st.lists(st.integers(min_value=0, max_value=60), max_size=8),
    other=st.one_of(st.none(), st.text(min_size=1, max_size=60)),
)
def test_property_retries_deliver_the_final_answer_once(
    answer: str, cut: int, cuts1: list[int], cuts2: list[int], other: str | None
) -> None:
    m, got, resets = _recording()
    first = answer[: cut % (len(answer) + 1)]  # attempt 1 breaks somewhere
    final = answer if other is None else other
    _stream(m, "r", _split(first, cuts1), attempt=1)
    _stream(m, "r", _split(final, cuts2), attempt=2)
    m.on_llm_end(LLMResponse(final), run_id="r", attempts=2)
    delivered = "".join(got)
    if final.startswith(first):
        assert resets == []
        assert delivered == final  # seamless: nothing repeated, nothing missing
    else:
        assert resets == [2]
        assert delivered.endswith(final)  # after the reset: exactly the final answer
        assert delivered == first[: len(delivered) - len(final)] + final


def test_a_shorter_retry_is_settled_when_the_call_ends() -> None:
    m, got, resets = _recording()
    _stream(m, "r", ["Hello", " world"], attempt=1)
    _stream(m, "r", ["Hello"], attempt=2)  # a prefix of what was shown: not caught per token
    assert resets == []
    m.on_llm_end(LLMResponse("Hello"), run_id="r", attempts=2)
    assert resets == [2]
    assert got == ["Hello", " world", "Hello"]
