"""hookwire.drain: a driver run to its end for its outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from hookwire.drain import adrain, drain


def test_drain_returns_the_last_item_of_its_type() -> None:
    def gen(last: object) -> Iterator[object]:
        yield "token"
        yield last

    assert drain(gen(3), int) == 3
    with pytest.raises(TypeError, match="not a int"):
        drain(gen("x"), int)


async def test_adrain_returns_the_last_item_of_its_type() -> None:
    async def agen(last: object) -> AsyncIterator[object]:
        yield "token"
        yield last

    assert await adrain(agen(3), int) == 3
    with pytest.raises(TypeError, match="not a int"):
        await adrain(agen("x"), int)
