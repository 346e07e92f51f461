"""Span patches from log records (``hookwire.stores.traces.spans``): the parser of the events
the trace store takes, property-tested."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from trace_records import T0, trace

from hookwire.stores.traces.spans import PREVIEW_CHARS, merge, preview, spans_from_records


def _fold_in_batches(records: list[dict[str, Any]], cuts: list[int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    bounds = [0, *sorted(set(cuts)), len(records)]
    for a, b in itertools.pairwise(bounds):
        for patch in spans_from_records(records[a:b]):
            if patch["span_id"] in out:
                merge(out[patch["span_id"]], patch)
            else:
                out[patch["span_id"]] = dict(patch)
    return out


@given(st.integers(1, 4), st.lists(st.integers(0, 28), max_size=10))
def test_batches_fold_to_the_same_spans_however_they_are_cut(n: int, cuts: list[int]) -> None:
    records = [r for i in range(n) for r in trace(i, T0 + i)]
    whole = {p["span_id"]: p for p in spans_from_records(records)}
    assert _fold_in_batches(records, [c for c in cuts if c <= len(records)]) == whole


@given(
    st.recursive(
        st.none() | st.text() | st.integers(),
        lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(), c, max_size=5),
        max_leaves=20,
    )
)
def test_a_preview_is_short_and_on_one_line(value: Any) -> None:
    shown = preview(value)
    assert shown is None if value is None else isinstance(shown, str)
    if shown is not None:
        assert len(shown) <= PREVIEW_CHARS and "\n" not in shown


def test_streamed_tokens_and_unknown_lines_make_no_span() -> None:
    assert spans_from_records([{"event": "llm_new_token", "run_id": "x", "timestamp": 1.0}]) == []
    assert spans_from_records([{"run_id": "x", "timestamp": 1.0}]) == []
