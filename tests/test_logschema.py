"""The JSONL log schema: records, lines, parsing, redaction."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hookwire.errors import ConfigurationError, LogFormatError, RateLimitError
from hookwire.events import (
    HOOKS,
    REQUEST_CONTEXT_KEYS,
    LLMResponse,
    ToolCall,
    Usage,
    event_from_call,
)
from hookwire.logschema import (
    EVENT_NAMES,
    REDACTED,
    SCHEMA_VERSION,
    Redactor,
    dumps_record,
    line_from_call,
    line_from_parts,
    parse_line,
    record_from_call,
    snapshot_parts,
    to_line,
    to_record,
)

RUN_ID = "0193a0d2-0000-7000-8000-000000000001"


def _kw(**extra: object) -> dict[str, object]:
    return {"run_id": RUN_ID, "timestamp": 1_700_000_000.5, **extra}


def test_llm_end_record_follows_the_documented_schema() -> None:
    resp = LLMResponse(
        "Paris",
        Usage(10, 2),
        model="gpt-4o-2024",
        cost=Decimal("0.000125"),
        tool_calls=(ToolCall("c1", "search", '{"q": 1}'),),
    )
    line = to_line(
        event_from_call(
            "on_llm_end",
            (resp,),
            _kw(model="gpt-4o", user_id="u1", latency_ms=812.5, attempts=1, depth=1),
        )
    )
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    rec = parse_line(line)
    assert rec["v"] == SCHEMA_VERSION
    assert rec["event"] == "llm_end"
    assert rec["run_id"] == RUN_ID
    assert rec["timestamp"] == 1_700_000_000.5
    assert rec["model"] == "gpt-4o"
    assert rec["user_id"] == "u1"
    assert rec["depth"] == 1
    assert rec["latency_ms"] == 812.5
    response = rec["data"]["response"]
    assert response["content"] == "Paris"
    assert response["usage"] == {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    assert response["cost"] == "0.000125"  # exact, as a string
    assert response["model"] == "gpt-4o-2024"
    assert response["tool_calls"] == [{"id": "c1", "name": "search", "arguments": '{"q": 1}'}]


def test_unknown_cost_is_null_never_zero() -> None:
    rec = parse_line(to_line(event_from_call("on_llm_end", (LLMResponse("x"),), _kw())))
    assert rec["data"]["response"]["cost"] is None


def test_every_hook_has_an_event_name_and_round_trips() -> None:
    samples = {
        "input": "q",
        "output": "a",
        "prompt": [{"role": "user", "content": "hi"}],
        "token": "tok",
        "response": LLMResponse("a"),
        "error": RateLimitError("slow down", status_code=429),
        "tool_name": "search",
        "tool_input": {"q": 1},
        "tool_output": "out",
        "content": "remember",
        "query": "what",
        "results": ["r1"],
        "attempt": 1,
        "max_attempts": 3,
    }
    for hook, spec in HOOKS.items():
        args = tuple(samples[a] for a in spec.args)
        rec = parse_line(to_line(event_from_call(hook, args, _kw())))
        assert rec["event"] == EVENT_NAMES[hook] == spec.event.name
        assert set(rec["data"]) == set(spec.args)


def test_errors_and_run_end_extras_are_written_as_json() -> None:
    err = RateLimitError("slow down", status_code=429)
    rec = parse_line(
        to_line(
            event_from_call(
                "on_run_end",
                (None,),
                _kw(error=err, usage=Usage(3, 4), cost=Decimal("1.5"), name="rlm"),
            )
        )
    )
    assert rec["error"] == {"type": "RateLimitError", "message": "slow down", "status_code": 429}
    assert rec["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert rec["cost"] == "1.5"
    assert rec["name"] == "rlm"


def test_odd_values_never_fail_serialisation() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    rec = record_from_call(
        "on_tool_start", ("t", {1: {2, 3}, "x": Thing(), "b": b"bytes"}), _kw(tags=("a", "b"))
    )
    out = orjson.loads(dumps_record(rec))
    assert out["data"]["tool_input"]["x"] == "a thing"
    assert sorted(out["data"]["tool_input"]["1"]) == [2, 3]
    assert out["tags"] == ["a", "b"]


def test_reserved_names_keep_their_meaning() -> None:
    rec = record_from_call("on_error", (RuntimeError("x"),), _kw(event="custom", v=99))
    assert rec["event"] == "error"
    assert rec["v"] == SCHEMA_VERSION


def test_include_flags_leave_out_text_but_keep_figures() -> None:
    resp = LLMResponse("secret answer", Usage(5, 6), cost=Decimal("0.1"))
    rec = record_from_call("on_llm_end", (resp,), _kw(), include_responses=False)
    assert "content" not in rec["data"]["response"]
    assert rec["data"]["response"]["usage"]["total_tokens"] == 11
    assert rec["data"]["response"]["cost"] == "0.1"
    rec = record_from_call("on_llm_start", ("my prompt",), _kw(), include_prompts=False)
    assert rec["data"] == {}
    rec = record_from_call("on_tool_start", ("t", {"a": 1}), _kw(), include_prompts=False)
    assert rec["data"] == {"tool_name": "t"}
    rec = record_from_call("on_tool_end", ("t", "out"), _kw(), include_responses=False)
    assert rec["data"] == {"tool_name": "t"}
    ev = event_from_call("on_memory_recall", ("q", ["r"]), _kw())
    assert to_record(ev, include_prompts=False, include_responses=False)["data"] == {}


@pytest.mark.parametrize("hook", list(HOOKS))
def test_the_switches_leave_out_what_the_hook_table_calls_content(hook: str) -> None:
    # Any value in a content argument: a response that is not an LLMResponse (a dict, a
    # string) has no figures to keep, so it goes as a whole.
    spec = HOOKS[hook]
    args = tuple({"content": f"{a} text"} for a in spec.args)
    for prompts, responses in ((False, True), (True, False), (False, False)):
        hidden = (() if prompts else spec.prompts) + (() if responses else spec.responses)
        wanted = {a: v for a, v in zip(spec.args, args, strict=True) if a not in hidden}
        rec = record_from_call(
            hook, args, _kw(), include_prompts=prompts, include_responses=responses
        )
        line = line_from_call(
            hook, args, _kw(), include_prompts=prompts, include_responses=responses
        )
        assert rec["data"] == wanted == orjson.loads(line)["data"], (hook, prompts, responses)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"event": "x", "timestamp": 1, "run_id": "r"}', "no schema version"),
        (b'{"v": 99, "event": "x", "timestamp": 1, "run_id": "r"}', "upgrade hookwire"),
        (b'{"v": 1, "timestamp": 1, "run_id": "r"}', 'no "event"'),
        (b'{"v": 1, "event": "x", "timestamp": "now", "run_id": "r"}', "timestamp"),
        (b'{"v": 1, "event": "x", "timestamp": 1}', "run_id"),
        (b'{"v": 1, "event": "x", "timestamp": 1, "run_id": "r", "data": 3}', "data"),
        (b'{"v": true, "event": "x", "timestamp": 1, "run_id": "r"}', "schema version"),
    ],
)
def test_parse_line_names_what_is_wrong(line: bytes, message: str) -> None:
    with pytest.raises(LogFormatError, match=re.escape(message)):
        parse_line(line)


# -- redaction --------------------------------------------------------------------------------

SECRETS = [
    ("key sk-proj-abcdefghijklmnopqrstuvwxyz0123", "sk-proj-abcdefghijklmnopqrstuvwxyz0123"),
    ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.abc123", "eyJhbGciOi.JIUzI1NiJ9.abc123"),
    ("curl -H 'authorization: basic dXNlcjpwYXNzMTIz'", "dXNlcjpwYXNzMTIz"),
    ("postgresql://admin:hunter2@db.internal:5432/app", "hunter2"),
    ('{"api_key": "abc-def-ghi"}', "abc-def-ghi"),
    ("OPENAI_API_KEY=zzzyyyxxx", "zzzyyyxxx"),
    ("password=correct-horse", "correct-horse"),
    ("client_secret: s3cr3tvalue", "s3cr3tvalue"),
    ('{"access_token": "at-123456"}', "at-123456"),
    ("aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
    (
        "gh token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ),
    ("slack xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_secrets_never_reach_a_line(text: str, secret: str) -> None:
    for hook, args in (
        ("on_llm_start", ([{"role": "user", "content": text}],)),
        ("on_tool_end", ("t", text)),
        ("on_error", (RuntimeError(text),)),
    ):
        line = to_line(event_from_call(hook, args, _kw(metadata={"note": text})))
        assert secret.encode() not in line, line
        assert REDACTED.encode() in line
        parse_line(line)  # still valid JSON, still one line


def test_redaction_keeps_ordinary_prose() -> None:
    text = "basic questions about token generation, key points, the secret of a good password"
    assert Redactor().text(text) == text
    line = to_line(event_from_call("on_llm_start", (text,), _kw()))
    assert parse_line(line)["data"]["prompt"] == text


def test_redaction_keeps_the_scheme_and_user() -> None:
    r = Redactor()
    assert r.text("Bearer abc123def456") == f"Bearer {REDACTED}"
    assert r.text("https://bob:pw123@host/x") == f"https://bob:{REDACTED}@host/x"


def test_user_patterns_and_functions() -> None:
    r = Redactor([r"\d{3}-\d{2}-\d{4}"])
    line = to_line(event_from_call("on_llm_start", ("ssn 123-45-6789 ok",), _kw()), redactor=r)
    assert b"123-45-6789" not in line
    assert REDACTED.encode() in line
    r2 = Redactor(lambda s: s.replace("Alice", "[NAME]"))
    line = to_line(event_from_call("on_llm_start", ('Alice said "hi"',), _kw()), redactor=r2)
    assert parse_line(line)["data"]["prompt"] == '[NAME] said "hi"'
    # A user pattern that matches JSON syntax cannot break the line: it sees values only.
    r3 = Redactor(['"', r"\\"])
    line = to_line(event_from_call("on_llm_start", ('a "quoted" \\ word',), _kw()), redactor=r3)
    assert parse_line(line)["data"]["prompt"] == f"a {REDACTED}quoted{REDACTED} {REDACTED} word"


def test_bad_user_patterns_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="not a valid regular expression"):
        Redactor(["(unclosed"])
    with pytest.raises(ConfigurationError, match="list of regular expressions"):
        Redactor([42])  # type: ignore[list-item]


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60
)  # any Unicode text, without lone surrogates


@settings(max_examples=150, deadline=None)
@given(before=_TEXT, after=_TEXT, body=st.from_regex(r"[A-Za-z0-9]{20,40}", fullmatch=True))
def test_property_an_openai_key_anywhere_is_redacted(before: str, after: str, body: str) -> None:
    secret = "sk-" + body
    text = f"{before} {secret} {after}"
    line = to_line(event_from_call("on_llm_start", (text,), _kw()))
    assert secret.encode() not in line
    parse_line(line)


@settings(max_examples=150, deadline=None)
@given(
    user=st.from_regex(r"[a-z]{1,10}", fullmatch=True),
    pw=st.from_regex(r"[A-Za-z0-9!$%*]{1,20}", fullmatch=True),
    noise=_TEXT,
)
def test_property_url_passwords_are_redacted(user: str, pw: str, noise: str) -> None:
    url = f"redis://{user}:{pw}@cache:6379/0"
    line = to_line(event_from_call("on_tool_end", ("t", f"{noise} {url}"), _kw()))
    rec = parse_line(line)
    assert f"{user}:{pw}@" not in rec["data"]["tool_output"]
    assert f"redis://{user}:{REDACTED}@cache" in rec["data"]["tool_output"]


@settings(max_examples=200, deadline=None)
@given(text=_TEXT, extra=st.dictionaries(st.text(max_size=10), _TEXT, max_size=4))
def test_property_redacting_never_breaks_a_line(text: str, extra: dict[str, str]) -> None:
    line = to_line(
        event_from_call("on_tool_start", ("t", {"x": text, **extra}), _kw(metadata=extra))
    )
    assert line.count(b"\n") == 1
    assert line.endswith(b"\n")
    rec = parse_line(line)
    assert rec["run_id"] == RUN_ID


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200),
    latency=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    prompt_tokens=st.integers(min_value=0, max_value=10**9),
    completion_tokens=st.integers(min_value=0, max_value=10**9),
    user=st.one_of(st.none(), st.text(max_size=20)),
    cost=st.one_of(st.none(), st.decimals(min_value=0, max_value=1000, places=8)),
)
def test_property_round_trip(
    text: str,
    latency: float,
    prompt_tokens: int,
    completion_tokens: int,
    user: str | None,
    cost: Decimal | None,
) -> None:
    resp = LLMResponse(text, Usage(prompt_tokens, completion_tokens), cost=cost)
    kw = _kw(latency_ms=latency, model="m")
    if user is not None:
        kw["user_id"] = user
    rec = parse_line(to_line(event_from_call("on_llm_end", (resp,), kw)))
    assert rec["latency_ms"] == latency
    assert rec.get("user_id") == user or REDACTED in (rec.get("user_id") or "")
    usage = rec["data"]["response"]["usage"]
    assert usage["prompt_tokens"] == prompt_tokens
    assert usage["total_tokens"] == prompt_tokens + completion_tokens
    got = rec["data"]["response"]["cost"]
    assert (got is None) if cost is None else Decimal(got) == cost
    content = rec["data"]["response"]["content"]
    assert content == text or REDACTED in content


def test_secret_keys_with_non_string_values_are_redacted_and_the_line_stays_valid() -> None:
    line = to_line(
        event_from_call(
            "on_tool_start", ("login", {"password": 123456789, "api_key": None, "n": 5}), _kw()
        )
    )
    rec = parse_line(line)
    assert rec["data"]["tool_input"] == {"password": REDACTED, "api_key": REDACTED, "n": 5}
    assert b"123456789" not in line


def test_no_trigger_contains_another() -> None:
    # The scanner uses leftmost-first matching for speed; it finds the same hits as standard
    # Aho-Corasick matching only while no trigger literal contains another one.
    from hookwire.redaction import _TRIGGERS

    for a in _TRIGGERS:
        for b in _TRIGGERS:
            assert a == b or b not in a, (a, b)


_SCAN_PARTS = (
    *("sk-", "key", "KEY", "_token=", "-token:", "Bearer ", "://", "ghp_", "hf_", "AKIA"),
    *("AIza", "passw", "secret", "xox", "a", "_", "-", ":", "=", " ", '"', "A"),
)


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(_SCAN_PARTS),
        max_size=40,
    )
)
def test_property_scanner_finds_every_trigger_occurrence(parts: list[str]) -> None:
    from hookwire.redaction import _TRIGGER_RE, _Scanner

    data = "".join(parts).encode()
    expected = [(m.start(), m.end()) for m in _TRIGGER_RE.finditer(data)]
    assert [(s, e) for _, s, e in _Scanner().hits(data)] == expected


def test_line_from_parts_is_the_line_of_the_merged_keywords() -> None:
    resp = LLMResponse("4", Usage(7, 1), model="m", cost=Decimal("0.5"))
    ctx = {"trace_id": "t", "user_id": "u1", "agent": "a"}
    kw = {"latency_ms": 2.5, "user_id": "caller wins", "event": "reserved"}
    line = line_from_parts("on_llm_end", (resp,), "r", 1.5, ctx, kw, "m", "openai")
    merged = {"run_id": "r", "timestamp": 1.5, **ctx, **kw, "model": "m", "provider": "openai"}
    assert line == line_from_call("on_llm_end", (resp,), merged)
    rec = parse_line(line)
    assert rec["user_id"] == "caller wins" and rec["event"] == "llm_end"
    assert kw == {"latency_ms": 2.5, "user_id": "caller wins", "event": "reserved"}  # unchanged


# -- FileLogCallback's line against the reference record -------------------------------------
# FileLogCallback serialises on the app thread with ``line_from_parts`` (one dict, one dumps,
# no keyword dict merged first); ``record_from_call`` + ``dumps_record`` is the schema's
# reference. For any values an app may send, both must give the same line.

_SECRET = st.from_regex(r"sk-[A-Za-z0-9]{24,40}", fullmatch=True)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too: written as strings
    st.floats(),  # NaN and infinities are written as null
    st.decimals(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),  # controls too
    _SECRET,
)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
_CONTEXT_KEYS = ("trace_id", "parent_run_id", "depth", "tags", "metadata")


@st.composite
def _dispatched(draw: st.DrawFn) -> tuple[Any, ...]:
    hook = draw(st.sampled_from(sorted(HOOKS)))
    if hook == "on_llm_end":
        text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
        args: tuple[Any, ...] = (
            LLMResponse(
                draw(st.one_of(text, _SECRET)),
                Usage(draw(st.integers(0, 10**9)), draw(st.integers(0, 10**9))),
                model=draw(st.one_of(st.none(), text)),
                cost=draw(st.one_of(st.none(), st.decimals(0, 1000, places=8))),
                tool_calls=tuple(
                    ToolCall(f"c{i}", "t", draw(text)) for i in range(draw(st.integers(0, 2)))
                ),
            ),
        )
    else:
        args = tuple(draw(_VALUE) for _ in HOOKS[hook].args)
    ctx = draw(
        st.dictionaries(
            st.sampled_from(_CONTEXT_KEYS + tuple(REQUEST_CONTEXT_KEYS)), _VALUE, max_size=5
        )
    )
    kw = draw(
        st.dictionaries(
            st.one_of(
                st.sampled_from(("v", "event", "data", "usage", "cost", "user_id")),
                st.text(max_size=8),
            ),
            st.one_of(_VALUE, st.builds(Usage, st.integers(0, 99), st.integers(0, 99))),
            max_size=4,
        )
    )
    model, provider = draw(st.one_of(st.none(), _SCALAR)), draw(st.one_of(st.none(), _SCALAR))
    return hook, args, RUN_ID, draw(st.floats(0, 2e9)), ctx, kw, model, provider


@settings(max_examples=400, deadline=None)
@given(event=_dispatched())
def test_property_filelog_line_is_the_reference_record(event: tuple[Any, ...]) -> None:
    hook, args, run_id, timestamp, ctx, kw, model, provider = event
    kept = dict(kw)
    line = line_from_parts(hook, args, run_id, timestamp, ctx, kw, model, provider)
    merged = {"run_id": run_id, "timestamp": timestamp, **ctx, **kw}
    if model is not None:
        merged["model"] = model
    if provider is not None:
        merged["provider"] = provider
    reference = dumps_record(record_from_call(hook, args, merged))
    assert kw == kept  # only read
    assert line == reference
    assert orjson.loads(line) == orjson.loads(reference)
    red = Redactor()
    out = red.json_bytes(line)
    assert orjson.loads(out) == orjson.loads(red.json_bytes(reference))
    assert parse_line(out)["event"] == EVENT_NAMES[hook]
    assert b"sk-" not in out or REDACTED.encode() in out


@settings(max_examples=200, deadline=None)
@given(event=_dispatched())
def test_property_a_snapshot_makes_the_same_line(event: tuple[Any, ...]) -> None:
    # FileLogCallback queues the parts (what the app may still change serialised first) and
    # makes the line on its writer: the line must be the one made from the originals.
    hook, args, run_id, timestamp, ctx, kw, model, provider = event
    kept = dict(kw)
    snap_args, snap_kw = snapshot_parts(args, kw)
    assert kw == kept  # only read
    later = line_from_parts(hook, snap_args, run_id, timestamp, ctx, dict(snap_kw), model, provider)
    assert later == line_from_parts(hook, args, run_id, timestamp, ctx, kw, model, provider)
