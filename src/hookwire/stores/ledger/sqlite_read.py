"""``UsageLedger.summary`` on an SQLite file through the standard library's ``sqlite3``: what
``hookwire costs`` reads there, without importing SQLAlchemy (most of its start-up).

The same reads as :class:`SQLiteUsageLedger` (``.sql``): the plan and the arithmetic are
``.rollups``'; only the statements are written here, as text with ``?`` parameters, over the
columns ``hookwire.stores.schema`` declares (a test compares both on the same data). The file
is opened read-only and used only when its schema is at this hookwire's head revision;
otherwise :func:`summary` returns ``None`` and the caller goes through the store, which
upgrades the schema or says why not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any

from ..revisions import MIGRATIONS, file_heads, open_sqlite_at
from ..values import money_from_units
from . import rollups
from .records import ESTIMATED, SCOPES
from .rollups import SUMS, Read

__all__ = ["TOTALS", "summary"]

#: The sums each ``usage_totals`` row keeps (its columns besides the key).
TOTALS = (*SUMS, "estimated_prompt_tokens", "estimated_completion_tokens")
_MONEY = frozenset({"cost", "estimated_cost"})
_UTC = timezone.utc

# An estimated call's figures are an upper bound: summed apart from the known ones (as
# ``SQLUsageLedger._ledger_sums``). Each ``?`` is the ``source`` of estimated calls.
_KNOWN = "sum(CASE WHEN source = ? THEN NULL ELSE {0} END) AS {0}"
_LEDGER_SUMS = ", ".join(
    [
        "count(*) AS calls",
        _KNOWN.format("prompt_tokens"),
        _KNOWN.format("completion_tokens"),
        _KNOWN.format("cached_tokens"),
        "count(CASE WHEN source = ? THEN NULL ELSE cached_tokens END) AS cached_calls",
        _KNOWN.format("reasoning_tokens"),
        "count(CASE WHEN source = ? THEN NULL ELSE reasoning_tokens END) AS reasoning_calls",
        _KNOWN.format("total_tokens"),
        _KNOWN.format("cost"),
        "count(*) - count(CASE WHEN source = ? THEN NULL ELSE cost END) AS unknown_cost_calls",
        "count(CASE WHEN source = ? THEN 1 END) AS estimated_calls",
        "sum(CASE WHEN source = ? THEN total_tokens END) AS estimated_tokens",
        "sum(CASE WHEN source = ? THEN cost END) AS estimated_cost",
        "count(CASE WHEN source = ? THEN cost END) AS estimated_priced_calls",
    ]
)
_LEDGER_SUMS_PARAMS = (ESTIMATED,) * _LEDGER_SUMS.count("?")
_TOTALS_SUMS = ", ".join(f"sum({name}) AS {name}" for name in TOTALS)
#: The ledger's column of each group (created_at is fixed-width ISO 8601 text in UTC).
_LEDGER_GROUPS = {
    **SCOPES,
    "model": "model",
    "provider": "provider",
    "day": "substr(created_at, 1, 10)",
    "month": "substr(created_at, 1, 7)",
}

#: A day's or month's part of a totals row's ``period_start`` (``YYYY-MM-DD`` or ``YYYY-MM``).
_PERIOD_PREFIX = {"day": "substr(period_start, 1, 10)", "month": "substr(period_start, 1, 7)"}


def _when(at: datetime) -> str:
    # as ``schema.UTCDateTime`` stores it on SQLite
    return at.astimezone(_UTC).isoformat(timespec="microseconds")


def _ledger_read(read: Read, filters: Mapping[str, str]) -> tuple[str, list[Any]]:
    cols = [f'{_LEDGER_GROUPS[g]} AS "{g}"' for g in read.groups]
    conditions = ["1"]
    params: list[Any] = list(_LEDGER_SUMS_PARAMS)
    if read.piece.first is not None:
        conditions.append("created_at >= ?")
        params.append(_when(read.piece.first))
    if read.piece.last is not None:
        conditions.append("created_at < ?")
        params.append(_when(read.piece.last))
    for name, value in filters.items():
        conditions.append(f"{SCOPES.get(name, name)} = ?")
        params.append(value)
    by = [_LEDGER_GROUPS[g] for g in read.groups]
    sql = (
        f"SELECT {', '.join([*cols, 'currency', _LEDGER_SUMS])} FROM usage_ledger "
        f"WHERE {' AND '.join(conditions)} GROUP BY {', '.join([*by, 'currency'])}"
    )
    return sql, params


def _totals_read(read: Read) -> tuple[str, list[Any]]:
    piece = read.piece
    cols = []
    for g in read.groups:
        if g in ("day", "month"):
            length = 10 if g == "day" else 7
            cols.append(
                "period_start" if piece.period == g else f"substr(period_start, 1, {length})"
            )
        else:
            cols.append("key")
    conditions = ["scope = ?", "period = ?"]
    params: list[Any] = [read.scope, piece.period]
    if read.key is not None:
        conditions.append("key = ?")
        params.append(read.key)
    if piece.first is not None:
        conditions.append("period_start >= ?")
        params.append(piece.first)
    if piece.last is not None:
        conditions.append("period_start < ?")
        params.append(piece.last)
    labelled = [f'{col} AS "{g}"' for col, g in zip(cols, read.groups, strict=True)]
    sql = (
        f"SELECT {', '.join([*labelled, 'currency', _TOTALS_SUMS])} FROM usage_totals "
        f"WHERE {' AND '.join(conditions)} GROUP BY {', '.join([*cols, 'currency'])}"
    )
    return sql, params


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    out = []
    for values in cursor:
        row = dict(zip(names, values, strict=True))
        for name in _MONEY:
            if row[name] is not None:
                row[name] = money_from_units(row[name])
        out.append(row)
    return out


def summary(
    path: str,
    by: Sequence[str] | str = (),
    *,
    since: datetime | date | str | None = None,
    until: datetime | date | str | None = None,
    where: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> list[dict[str, Any]] | None:
    """``UsageLedger.summary`` (same arguments, same rows) of the SQLite file ``path``, or
    ``None`` when the file is not there, cannot be read, or its schema is not at this
    hookwire's head revision (the store then decides). ``timeout``: how long to wait for a
    writer's lock, in seconds, as the stores' connections do. Raises ``ConfigurationError``
    for a group or filter that does not exist."""
    groups, start, end, filters = rollups.arguments(by, since, until, where)
    heads = file_heads(MIGRATIONS / "versions")
    if heads is None or len(heads) != 1:
        return None
    conn = open_sqlite_at(path, heads[0], timeout=timeout)
    if conn is None:
        return None
    how = rollups.plan(groups, start, end, filters)

    def fetch(read: Read) -> list[dict[str, Any]]:
        sql, params = _ledger_read(read, filters) if read.scope is None else _totals_read(read)
        return _rows(conn, sql, params)

    try:
        # One read transaction: every part of the summary sees the same writes.
        conn.execute("BEGIN")
        return rollups.summarise(groups, start, end, how, fetch)
    except sqlite3.Error:
        return None
    finally:
        conn.close()
