"""hookwire.drain: a driver run to its end for its outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator

import pytest

from hookwire.drain import adrain, drain


def test_drain_returns_what_the_generator_returns() -> None:
    def gen() -> Generator[str, None, int]:
        yield "a"
        yield "b"
        return 3

    assert drain(gen()) == 3


async def test_adrain_returns_the_last_item_of_its_type() -> None:
    async def agen(last: object) -> AsyncIterator[object]:
        yield "token"
        yield last

    assert await adrain(agen(3), int) == 3
    with pytest.raises(TypeError, match="not a int"):
        await adrain(agen("x"), int)
