"""How a body the app reads itself is split into server-sent events (``streams._SSESplitter``):
wherever the network cuts the bytes, the same events come out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hookwire.integrations.openai.streams import _SSESplitter

names = st.none() | st.sampled_from(["response.created", "response.output_text.delta"])
datas = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    min_size=1,
    max_size=30,
)


def encode(events: list[tuple[str | None, str]], crlf: bool) -> bytes:
    nl = "\r\n" if crlf else "\n"
    out = []
    for name, data in events:
        head = f"event: {name}{nl}" if name else ""
        out.append(f"{head}data: {data}{nl}{nl}")
    return "".join(out).encode()


@given(
    st.lists(st.tuples(names, datas), max_size=8),
    st.lists(st.integers(min_value=0, max_value=400), max_size=10),
    st.booleans(),
)
def test_events_come_out_whole_wherever_the_body_is_cut(
    events: list[tuple[str | None, str]], cuts: list[int], crlf: bool
) -> None:
    body = encode(events, crlf)
    points = sorted({min(c, len(body)) for c in cuts})
    parts = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    splitter = _SSESplitter()
    got = [event for part in parts for event in splitter.feed(part)]
    assert got == events


def test_multi_line_data_and_comments() -> None:
    splitter = _SSESplitter()
    got = splitter.feed(b": keep-alive\n\ndata: one\ndata: two\n\ndata:x\n\n")
    assert got == [(None, "one\ntwo"), (None, "x")]
