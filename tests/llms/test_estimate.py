"""The estimate of a call whose provider sent no usage: an upper bound, marked as such."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hookwire import LLMResponse, Usage
from hookwire.llms.estimate import (
    UNKNOWN_USAGE,
    estimate_prompt_tokens,
    estimate_usage,
    prompt_bound,
    with_estimate,
)
from hookwire.testing.openai_server.script import split_words, words_in

texts = st.text(max_size=200)
roles = st.sampled_from(["system", "user", "assistant", "tool"])
messages = st.lists(
    st.fixed_dictionaries({"role": roles, "content": texts}), min_size=1, max_size=6
)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20)
tools = st.none() | st.lists(
    st.builds(
        lambda name, props: {
            "type": "function",
            "function": {
                "name": name,
                "parameters": {
                    "type": "object",
                    "properties": {p: {"type": "string"} for p in props},
                },
            },
        },
        names,
        st.lists(names, max_size=4),
    ),
    max_size=3,
)


def byte_tokens(text: str, cuts: list[int]) -> int:
    """The tokens of ``text`` under a byte-level BPE cutting its UTF-8 bytes at ``cuts``: any
    such tokenizer, down to the worst (one token per byte)."""
    size = len(text.encode())
    return len({0, size} | {min(c, size) for c in cuts}) - 1


@given(
    messages,
    tools,
    st.lists(texts, max_size=20),
    st.lists(st.integers(min_value=0, max_value=800), max_size=800),
)
def test_the_estimate_is_an_upper_bound_of_what_was_sent_and_streamed(
    msgs: list[dict[str, str]],
    tool_list: list[dict[str, Any]] | None,
    chunks: list[str],
    cuts: list[int],
) -> None:
    text = "".join(chunks)
    usage = estimate_usage(prompt_bound(msgs, tool_list), text)
    assert usage.estimated and not usage.known
    # Any byte-level tokenization of the messages, with the chat template's few tokens per
    # message (role, separators: 4) and the answer's priming (3), and of each tool's name and
    # property names, is within the prompt bound.
    template = 4 * len(msgs) + 3
    tool_words = sum(
        len(t["function"]["name"].encode())
        + sum(len(p.encode()) for p in t["function"]["parameters"]["properties"])
        for t in tool_list or ()
    )
    prompt_tokens = sum(byte_tokens(m["content"], cuts) + 1 for m in msgs) + template + tool_words
    assert usage.prompt_tokens >= prompt_tokens
    # The test server's own counts (a word a token) are within it too.
    assert usage.prompt_tokens >= words_in([m["content"] for m in msgs])
    # The answer: every streamed chunk holds at least one token of at least one byte.
    assert usage.completion_tokens >= byte_tokens(text, cuts)
    assert usage.completion_tokens >= sum(1 for c in chunks if c)
    assert usage.completion_tokens >= len(split_words(text))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_an_estimated_usage_keeps_the_plain_usage_working() -> None:
    assert Usage(11, 2).known and not Usage(11, 2).estimated
    assert Usage(11, 2) == Usage(11, 2, 13, None, None, False)
    total = Usage(11, 2) + Usage(5, 5, estimated=True)
    assert (total.prompt_tokens, total.completion_tokens, total.estimated) == (16, 7, True)
    assert "estimated" not in Usage(1, 1).to_dict()
    assert Usage(1, 1, estimated=True).to_dict()["estimated"] == 1


def test_an_answer_without_usage_gets_an_estimate_and_its_price() -> None:
    answer = LLMResponse("Paris.", usage=UNKNOWN_USAGE, model="gpt-4o", provider="openai")
    msgs = [{"role": "user", "content": "Capital of France?"}]
    out = with_estimate(answer, None, None, msgs, None)
    assert out.usage.estimated
    assert out.usage.prompt_tokens == estimate_prompt_tokens(msgs)
    assert out.usage.completion_tokens == len("Paris.")
    assert out.cost is not None and out.cost > Decimal(0)


def test_an_answer_with_usage_is_left_as_it_is() -> None:
    answer = LLMResponse("Paris.", usage=Usage(7, 2), model="gpt-4o", provider="openai")
    assert with_estimate(answer, None, None, [], None) is answer


def test_a_clients_own_estimate_is_kept() -> None:
    own = Usage(40, 9, estimated=True)
    answer = LLMResponse("Paris.", usage=own, model="gpt-4o", provider="openai")
    assert with_estimate(answer, None, None, [{"role": "user", "content": "x"}], None) is answer
