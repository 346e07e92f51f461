"""hookwire.frozen: read-only copies of what handlers receive."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookwire.frozen import FrozenDict, FrozenList, freeze

json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


@given(json_like)
def test_a_frozen_copy_equals_its_original_and_shares_no_container(value: Any) -> None:
    frozen = freeze(value)
    assert frozen == value
    assert orjson.loads(orjson.dumps(frozen)) == value
    assert json.loads(json.dumps(frozen)) == value

    def containers(v: Any) -> list[int]:
        if isinstance(v, dict):
            return [id(v), *(i for x in v.values() for i in containers(x))]
        if isinstance(v, list):
            return [id(v), *(i for x in v for i in containers(x))]
        return []

    assert not set(containers(frozen)) & set(containers(value))


def test_every_change_to_a_frozen_dict_or_list_is_refused() -> None:
    d = freeze({"a": [1, {"b": 2}]})
    assert isinstance(d, dict) and isinstance(d["a"], list)
    changes = [
        lambda: d.__setitem__("x", 1),
        lambda: d.__delitem__("a"),
        lambda: d.update(x=1),
        lambda: d.setdefault("x", 1),
        lambda: d.pop("a"),
        lambda: d.popitem(),
        lambda: d.clear(),
        lambda: d.__ior__({"x": 1}),
        lambda: d.__init__({"x": 1}),  # type: ignore[misc]
        lambda: d["a"].append(3),
        lambda: d["a"].extend([3]),
        lambda: d["a"].insert(0, 3),
        lambda: d["a"].__setitem__(0, 3),
        lambda: d["a"].__delitem__(0),
        lambda: d["a"].__iadd__([3]),
        lambda: d["a"].__imul__(2),
        lambda: d["a"].pop(),
        lambda: d["a"].remove(1),
        lambda: d["a"].clear(),
        lambda: d["a"].sort(),
        lambda: d["a"].reverse(),
        lambda: d["a"].__init__([9]),  # type: ignore[misc]
        lambda: d["a"][1].__setitem__("b", 3),
    ]
    for change in changes:
        with pytest.raises(TypeError, match="read-only"):
            change()
    assert d == {"a": [1, {"b": 2}]}
    mine = dict(d)
    mine["x"] = 1  # a copy of one's own is an ordinary dict


def test_copies_and_pickles_of_frozen_values_are_frozen_too() -> None:
    d = freeze({"a": [1, {"b": 2}], "t": (1, [2])})
    for again in (copy.copy(d), copy.deepcopy(d), pickle.loads(pickle.dumps(d))):
        assert again == d
        assert type(again) is FrozenDict and type(again["a"]) is FrozenList
    assert freeze(d) is d
    assert type(d["t"]) is tuple and type(d["t"][1]) is FrozenList
