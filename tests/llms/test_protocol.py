"""hookwire.llms.protocol: the LLM protocol and what a call's messages may be."""

from __future__ import annotations

import pytest

from hookwire.errors import ConfigurationError
from hookwire.llms import LLM, LocalLLM, OpenAIClient
from hookwire.llms.protocol import normalize_messages


def test_a_text_is_one_user_message() -> None:
    assert normalize_messages("hi") == [{"role": "user", "content": "hi"}]


def test_messages_are_copied() -> None:
    given = [{"role": "user", "content": "hi"}]
    out = normalize_messages(given)
    assert out == given and out[0] is not given[0]


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ({"role": "user", "content": "hi"}, "not one dict"),
        ([{"content": "hi"}], r"messages\[0\] must be a dict with a 'role'"),
        ([], "messages is empty"),
    ],
)
def test_bad_messages_are_refused(messages: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        normalize_messages(messages)  # type: ignore[arg-type]


def test_the_clients_follow_the_protocol() -> None:
    assert isinstance(LocalLLM(), LLM)
    assert isinstance(OpenAIClient(api_key="sk-test"), LLM)
