"""`hookwire report`: one streaming pass, per-group figures, broken lines never fatal."""

from __future__ import annotations

import gzip
import io
import json
import math
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookwire import CallbackManager, LLMResponse, Usage, request_context
from hookwire.callbacks import FileLogCallback
from hookwire.errors import ConfigurationError, RateLimitError
from hookwire.report import GROUPINGS, MAX_LINE_COST, render, render_json, summarize

DAY = 86_400.0
T0 = 1_700_000_000.0  # 2023-11-14 UTC


def _write_log(path: Path, **kw: object) -> None:
    """A known log: 3 gpt-4o calls (one failing after a retry), 2 local calls (no price)."""
    cb = FileLogCallback(path, **kw)  # type: ignore[arg-type]
    m = CallbackManager([cb])
    with request_context(agent="support", user_id="alice"):
        for latency, cost in ((100.0, "0.001"), (300.0, "0.002")):
            rid = m.on_llm_start("hi", model="gpt-4o", timestamp=T0)
            m.on_llm_end(
                LLMResponse("a", Usage(10, 5), model="gpt-4o-2024", cost=Decimal(cost)),
                run_id=rid,
                model="gpt-4o",
                latency_ms=latency,
                timestamp=T0 + 1,
            )
        rid = m.on_llm_start("hi", model="gpt-4o", timestamp=T0 + DAY)
        # The retry does not name the model: report finds it through the call's run_id.
        m.on_retry(1, 2, RateLimitError("slow"), run_id=rid, timestamp=T0 + DAY)
        m.on_llm_error(RateLimitError("slow"), run_id=rid, model="gpt-4o", timestamp=T0 + DAY)
    with request_context(agent="sales", user_id="bob"):
        for _ in range(2):
            rid = m.on_llm_start("hi", model="local", timestamp=T0 + DAY)
            m.on_llm_end(
                LLMResponse("b", Usage(1, 2), model="local"),
                run_id=rid,
                model="local",
                latency_ms=5.0,
                timestamp=T0 + DAY,
            )
    cb.close()


def test_per_model_figures(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    _write_log(log)
    rep = summarize([log])
    assert rep.broken == 0
    assert rep.events == rep.lines == 11
    gpt, local = rep.groups["gpt-4o"], rep.groups["local"]
    assert (gpt.calls, gpt.errors, gpt.retries) == (3, 1, 1)
    assert (gpt.prompt_tokens, gpt.completion_tokens, gpt.total_tokens) == (20, 10, 30)
    assert gpt.total_cost == Decimal("0.003")
    assert gpt.quantile(0.5) == pytest.approx(100, rel=0.02)
    assert gpt.quantile(1.0) == pytest.approx(300, rel=0.02)
    assert local.calls == 2
    assert local.total_cost is None
    d = rep.to_dict()
    assert d["groups"][1]["cost"] is None
    assert d["groups"][1]["unpriced_calls"] == 2
    assert d["total"]["calls"] == 5
    assert d["total"]["cost"] == "0.003"


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("agent", {"support": 3, "sales": 2}),
        ("user", {"alice": 3, "bob": 2}),
        ("day", {"2023-11-14": 2, "2023-11-15": 3}),
    ],
)
def test_grouping(tmp_path: Path, by: str, expected: dict[str, int]) -> None:
    log = tmp_path / "a.jsonl"
    _write_log(log)
    rep = summarize([log], by=by)  # type: ignore[arg-type]
    assert {k: g.calls for k, g in rep.groups.items()} == expected


def test_broken_lines_are_counted_with_their_line_numbers(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    _write_log(log)
    good = log.read_bytes().splitlines(keepends=True)
    bad = [
        b"{not json\n",
        b"[1, 2]\n",
        b'{"v": 7, "event": "llm_end", "timestamp": 1, "run_id": "r", "data": {}}\n',
        b'{"v": 1, "event": "llm_end", "run_id": "r"}\n',
        b'{"v": 1, "event": "llm_end", "timestamp": 1, "run_id": "r", "data": []}\n',
        b"\n",  # blank lines are skipped, not broken
        b'{"v": 1, "event": "llm_end", "timestamp": 1, "run_id": "r", '
        b'"data": {"response": {"usage": {"prompt_tokens": "x"}}}}\n',
        b'{"v": 1, "event": "llm_end", "timestamp": 1, "run_id": "cut", "da',  # torn last line
    ]
    log.write_bytes(b"".join(good[:3] + bad[:4] + good[3:] + bad[4:]))
    rep = summarize([log])
    assert rep.broken == 7
    assert [b.line for b in rep.broken_lines] == [4, 5, 6, 7, 16, 18, 19]
    assert "not valid JSON" in rep.broken_lines[0].error
    assert "upgrade hookwire" in rep.broken_lines[2].error
    assert rep.groups["gpt-4o"].calls == 3  # the good lines all still count


def test_many_broken_lines_keep_memory_bounded(tmp_path: Path) -> None:
    log = tmp_path / "junk.jsonl"
    log.write_bytes(b"junk\n" * 5000)
    rep = summarize([log])
    assert rep.broken == 5000
    assert len(rep.broken_lines) == 20


def test_rotated_backups_gzip_and_duplicates(tmp_path: Path) -> None:
    log = tmp_path / "r.jsonl"
    _write_log(log, max_bytes=1500, backup_count=20)
    assert (tmp_path / "r.jsonl.1").exists()
    assert summarize([log]).events < 11
    rep = summarize([log, tmp_path / "r.jsonl.1"], rotated=True)  # listed twice: read once
    assert rep.events == 11
    assert rep.groups["gpt-4o"].calls == 3
    gz = tmp_path / "all.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        for p in [*sorted(tmp_path.glob("r.jsonl.*")), log]:
            if not p.name.endswith(".lock"):
                f.write(p.read_bytes())
    assert summarize([gz]).groups["local"].calls == 2


def test_missing_file_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read log"):
        summarize([tmp_path / "nope.jsonl"])
    with pytest.raises(ConfigurationError, match="cannot group by"):
        summarize([], by="planet")  # type: ignore[arg-type]


def test_stdin(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    _write_log(log)
    rep = summarize(["-"], stdin=io.BytesIO(log.read_bytes()))
    assert rep.groups["gpt-4o"].calls == 3
    assert rep.files == ["<stdin>"]


_INT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_LINE = st.one_of(
    st.binary(max_size=80).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.builds(
        lambda d: orjson.dumps(d),
        st.dictionaries(
            st.sampled_from(["v", "event", "timestamp", "run_id", "data", "model"]),
            st.one_of(st.none(), _INT, st.text(max_size=5), st.lists(_INT, max_size=2)),
        ),
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_LINE, max_size=30))
def test_property_garbage_never_stops_the_report(tmp_path: Path, lines: list[bytes]) -> None:
    log = tmp_path / "g.jsonl"
    log.write_bytes(b"\n".join(lines))
    rep = summarize([log])
    assert rep.events + rep.broken <= len(lines)
    assert rep.lines == len(b"\n".join(lines).splitlines()) if lines else rep.lines == 0


def _line(**fields: object) -> bytes:
    rec: dict[str, object] = {"v": 1, "event": "llm_end", "run_id": "r", "timestamp": 1e9}
    rec.update(fields)
    rec.setdefault("data", {"response": {"usage": {"prompt_tokens": 1}, "cost": "0.5"}})
    return orjson.dumps(rec) + b"\n"


_OUT_OF_RANGE = [
    _line(timestamp=1e300),
    _line(timestamp=-1e15),
    _line(data={"response": {"cost": 1e308}}),
    _line(data={"response": {"cost": "1e999999999"}}),
    _line(data={"response": {"cost": "-0.5"}}),
    _line(data={"response": {"usage": {"prompt_tokens": 1e308}}}),
    _line(data={"response": {"usage": {"completion_tokens": -3}}}),
    _line(latency_ms=1e300),
]


@pytest.mark.parametrize("by", GROUPINGS)
def test_report_skips_and_counts_a_line_with_an_out_of_range_cost_or_timestamp(
    tmp_path: Path, by: str
) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(_line() + b"".join(_OUT_OF_RANGE) + _line())
    rep = summarize([log], by=by)  # type: ignore[arg-type]
    assert rep.broken == len(_OUT_OF_RANGE)
    assert [b.line for b in rep.broken_lines] == list(range(2, 2 + len(_OUT_OF_RANGE)))
    assert rep.events == 2
    total = rep.total
    assert (total.calls, total.prompt_tokens, total.cost) == (2, 2, Decimal("1.0"))
    assert sum(g.calls for g in rep.groups.values()) == 2  # no empty group from a bad line
    out, err = io.StringIO(), io.StringIO()
    render(rep, out, err)
    assert f"{len(_OUT_OF_RANGE)} broken (skipped, not counted" in out.getvalue()
    assert f"broken line {log}:2: " in err.getvalue()


@pytest.mark.parametrize("cost", ["NaN", "sNaN", "Infinity", "-Infinity", "nan"])
def test_report_never_sums_nan_or_infinity(tmp_path: Path, cost: str) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(_line() + _line(data={"response": {"cost": cost}}))
    rep = summarize([log])
    assert rep.broken == 1
    assert rep.total.total_cost == Decimal("0.5")
    assert rep.to_dict()["total"]["cost"] == "0.5"


def _dumps(value: object) -> bytes:
    # The standard library's JSON, which also writes integers beyond 64 bits.
    return json.dumps(value).encode()


_JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.sampled_from(["NaN", "Infinity", "1e999999999", "-1", "0.1", "sNaN"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_FIELD = st.one_of(
    _JSON, st.floats(allow_nan=False, allow_infinity=False), st.integers(), st.text(max_size=6)
)
# Lines shaped like hookwire's, with any value in any field, and any JSON at all.
_SHAPED = st.builds(
    lambda ts, event, model, latency, prompt, cost, resp, extra: _dumps(
        {
            "v": 1,
            "event": event,
            "run_id": "r",
            "timestamp": ts,
            "model": model,
            "latency_ms": latency,
            "data": {"response": resp or {"usage": {"prompt_tokens": prompt}, "cost": cost}},
            **extra,
        }
    ),
    ts=_FIELD,
    event=st.sampled_from(["llm_end", "llm_error", "retry", "llm_start", "run_end"]),
    model=_FIELD,
    latency=_FIELD,
    prompt=_FIELD,
    cost=_FIELD,
    resp=st.one_of(st.none(), _JSON),
    extra=st.dictionaries(st.sampled_from(["v", "user_id", "agent", "run_id"]), _JSON, max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.one_of(_SHAPED, _JSON.map(_dumps)), max_size=12),
    by=st.sampled_from(GROUPINGS),
)
def test_property_the_report_reader_takes_any_json_lines(lines: list[bytes], by: str) -> None:
    rep = summarize(["-"], by=by, stdin=io.BytesIO(b"\n".join(lines)))  # type: ignore[arg-type]
    assert rep.lines == len(lines)
    assert rep.events + rep.broken <= len(lines)
    total = rep.total
    assert total.cost.is_finite()
    assert 0 <= total.cost <= MAX_LINE_COST * len(lines)
    assert all(n >= 0 for n in (total.prompt_tokens, total.completion_tokens, total.total_tokens))
    for q in (0.5, 0.95):
        v = total.quantile(q)
        assert v is None or math.isfinite(v)
    orjson.dumps(rep.to_dict())
    render(rep, io.StringIO(), io.StringIO())
    render_json(rep, io.StringIO(), io.StringIO())
