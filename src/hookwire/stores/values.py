"""What the stores' columns hold, as plain Python (no SQLAlchemy): what text a column can
store, and how SQLite keeps money. ``hookwire.stores.schema`` builds its column types on
these; ``hookwire costs`` reads an SQLite file with them through ``sqlite3``."""

from __future__ import annotations

import decimal

__all__ = ["MONEY_CONTEXT", "MONEY_SCALE", "has_lone_surrogate", "money_from_units", "tidy"]

#: Money is kept to this many decimal places (PostgreSQL ``numeric(38, 12)``; on SQLite an
#: integer count of 10^-12 units).
MONEY_SCALE = 12
#: The context of money arithmetic: exact for any stored amount.
MONEY_CONTEXT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)


def has_lone_surrogate(value: str) -> bool:
    """Whether ``value`` holds a lone surrogate (such as ``'\\ud800'``): not valid Unicode,
    so no text column of either database (UTF-8) can store it."""
    if value.isascii():  # the common case, without copying the text
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def tidy(amount: decimal.Decimal) -> decimal.Decimal:
    """``amount`` without the storage's trailing zeros (``0.012``, not ``0.012000000000``),
    and never in exponent form (``10``, not ``1E+1``)."""
    if amount == amount.to_integral_value():
        return amount.quantize(decimal.Decimal(1), context=MONEY_CONTEXT)
    return amount.normalize(MONEY_CONTEXT)


def money_from_units(units: int) -> decimal.Decimal:
    """An amount SQLite keeps (or sums) as an integer count of 10^-:data:`MONEY_SCALE` units."""
    return tidy(decimal.Decimal(int(units)).scaleb(-MONEY_SCALE, MONEY_CONTEXT))
