"""Redaction: keys and tokens wherever they start a word, URL passwords whatever they hold."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookwire.events import event_from_call
from hookwire.logschema import parse_line, to_line
from hookwire.redaction import REDACTED, Redactor, redact_url

RUN_ID = "0193a0d2-0000-7000-8000-000000000001"
_KW = {"run_id": RUN_ID, "timestamp": 1_700_000_000.5}

_WORD_CHARS = set(string.ascii_letters + string.digits + "_")
# Any text: control characters, quotes, backslashes, JSON-looking text, any script.
_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
# What a secret follows: anything that does not continue a word (a newline, a tab, a carriage
# return, an escape character, NUL, a quote, a backslash, punctuation, a non-ASCII character).
_BOUNDARY = st.one_of(
    st.sampled_from(list("\n\t\r\x1b\x00\x07\x08\x0b\x0c\x7f\x85\u2028\"'\\ :=(,;<")),
    st.characters(blacklist_categories=("Cs",)).filter(lambda c: c not in _WORD_CHARS),
)
_KEY = st.from_regex(r"sk-(proj-)?[A-Za-z0-9_\-]{16,40}", fullmatch=True)
# "QZ" makes a token that cannot be part of anything else on the line (a run id, say).
_TOKEN = st.from_regex(r"QZ[A-Za-z0-9._~+/\-]{5,28}[0-9]", fullmatch=True)


def _never_written(text: str, secret: str) -> None:
    """Neither the FileLog lines an app would write with ``text`` in a prompt, a tool's input
    (a dict) and an error, nor the console's text, hold ``secret``; the lines stay valid."""
    for line in (
        to_line(event_from_call("on_llm_start", ([{"role": "user", "content": text}],), _KW)),
        to_line(event_from_call("on_tool_start", ("http", {"body": text, "n": 1}), _KW)),
        to_line(event_from_call("on_error", (RuntimeError(text),), _KW)),
    ):
        assert secret.encode() not in line, line
        parse_line(line)
    assert secret not in Redactor().text(text)


_AROUND = {"before": _TEXT, "boundary": _BOUNDARY, "after": _TEXT}


@settings(max_examples=300, deadline=None)
@given(key=_KEY, **_AROUND)
def test_property_a_key_after_any_text_never_reaches_a_line(
    before: str, boundary: str, key: str, after: str
) -> None:
    _never_written(before + boundary + key + after, key)


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "token"]),
    sep=st.sampled_from([" ", "\t", "  ", " \t"]),
    token=_TOKEN,
    **_AROUND,
)
def test_property_a_bearer_token_after_any_text_never_reaches_a_line(
    before: str, boundary: str, scheme: str, sep: str, token: str, after: str
) -> None:
    _never_written(before + boundary + scheme + sep + token + after, token)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(
        ["Authorization", "authorization", "AUTHORIZATION", "Proxy-Authorization"]
    ),
    sep=st.sampled_from([": ", ":", "=", ":\t", '": "', "': '", "='"]),
    scheme=st.sampled_from(["", "Bearer ", "ApiKey ", "Digest "]),
    value=_TOKEN,
    **_AROUND,
)
def test_property_an_authorization_value_never_reaches_a_line(
    before: str, boundary: str, name: str, sep: str, scheme: str, value: str, after: str
) -> None:
    _never_written(before + boundary + name + sep + scheme + value + after, value)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(
        ["api_key", "x-api-key", "password", "client_secret", "access_token", "refresh-token"]
    ),
    sep=st.sampled_from(["': '", "'='", "'=", ": '", "': \t'"]),
    value=_TOKEN,
    **_AROUND,
)
def test_property_a_secret_in_a_python_repr_never_reaches_a_line(
    before: str, boundary: str, name: str, sep: str, value: str, after: str
) -> None:
    # A dict of headers or keyword arguments printed by Python: {'api_key': '...'}.
    _never_written(before + boundary + "'" + name + sep + value + "'" + after, value)


def test_a_secret_in_a_python_repr_is_redacted_and_its_quotes_kept() -> None:
    r = Redactor()
    assert r.text("Headers({'authorization': 'abc123xyz', 'x': 'y'})") == (
        f"Headers({{'authorization': '{REDACTED}', 'x': 'y'}})"
    )
    assert r.text("call(api_key='k-123456', n=1)") == f"call(api_key='{REDACTED}', n=1)"
    assert r.text("{'access_token': 'abcdef123'}") == f"{{'access_token': '{REDACTED}'}}"


def test_an_authorization_header_without_a_scheme_is_redacted() -> None:
    r = Redactor()
    assert r.text("Authorization: abc123def") == f"Authorization: {REDACTED}"
    assert r.text("authorization=ApiKey k-123, next") == f"authorization={REDACTED}"
    assert r.text("Authorization: Bearer abc123def") == f"Authorization: Bearer {REDACTED}"


@pytest.mark.parametrize("before", ["\n", "\t", "\r", "\x1b[2J", "\x00"])
def test_a_key_after_an_escape_is_redacted_but_a_word_is_kept(before: str) -> None:
    key = "sk-abcdefghijklmnop1234"
    line = to_line(event_from_call("on_llm_start", (f"x{before}{key}",), _KW))
    assert key.encode() not in line
    prose = "a task-management-for-everyone-tool"
    assert parse_line(to_line(event_from_call("on_llm_start", (prose,), _KW)))["data"][
        "prompt"
    ] == (prose)


# -- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:p@ssw0rd@db/x", f"postgresql://app:{REDACTED}@db/x"),
        ("postgresql://app:p/ss:w#rd?@db:5432/x", f"postgresql://app:{REDACTED}@db:5432/x"),
        ("postgresql://app:p%40ss@db/x", f"postgresql://app:{REDACTED}@db/x"),
        ("app:s3cret@db/x", f"app:{REDACTED}@db/x"),
        ("postgresql://db/x?password=s3cret", f"postgresql://db/x?password={REDACTED}"),
        ("postgresql://app@db:5432/x", "postgresql://app@db:5432/x"),
        ("sqlite:///var/lib/app@2/hookwire.db", "sqlite:///var/lib/app@2/hookwire.db"),
    ],
)
def test_redact_url_hides_a_password_holding_at_or_slash(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_url_password_holding_at_is_redacted_whole_in_text() -> None:
    text = "connect to postgresql://app:p@ssw0rd@db/x failed"
    assert Redactor().text(text) == f"connect to postgresql://app:{REDACTED}@db/x failed"
    # In running text, host:port/path@... is a port and a path, not a password.
    assert Redactor().text("see http://localhost:8000/@vite/client") == (
        "see http://localhost:8000/@vite/client"
    )


def test_a_handlers_error_quoting_a_key_is_logged_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import io
    import logging

    from hookwire import CallbackManager
    from hookwire.callbacks import BaseCallback

    key = "sk-proj-" + "A1b2C3d4" * 6

    class Leaky(BaseCallback):
        def on_llm_start(self, prompt: object, **kwargs: object) -> None:
            raise RuntimeError(f"401: Incorrect API key provided: {key}")

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("hookwire").addHandler(handler)
    try:
        with caplog.at_level(logging.ERROR, logger="hookwire"):
            CallbackManager([Leaky()]).on_llm_start("hi")
    finally:
        logging.getLogger("hookwire").removeHandler(handler)
    written = stream.getvalue() + caplog.text
    assert "RuntimeError" in written  # the failure is logged, with its traceback
    assert key not in written
    assert key[:12] not in written
