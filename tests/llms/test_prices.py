"""hookwire.llms.prices: a call's cost, or None when it is not known."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hookwire import Usage
from hookwire.llms import prices


def test_no_model_or_no_pricing_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prices, "_pricing", [lambda *a: Decimal(1)])
    assert prices.price(None, Usage(1, 1), "openai") is None
    monkeypatch.setattr(prices, "_pricing", [None])
    assert prices.price("gpt-4o", Usage(1, 1), "openai") is None


def test_a_pricing_failure_is_unknown_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Decimal:
        raise ValueError("no price")

    monkeypatch.setattr(prices, "_pricing", [broken])
    assert prices.price("gpt-4o", Usage(1, 1), "openai") is None


def test_a_known_price() -> None:
    pytest.importorskip("hookwire.pricing")
    cost = prices.price("gpt-4o", Usage(1000, 1000), "openai")
    assert cost is not None and cost > 0
