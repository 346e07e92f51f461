"""``hookwire costs``: what the LLM calls in the usage ledger cost, grouped as you like.

::

    hookwire costs                                # everything, one line per currency
    hookwire costs --by user --by model --since 7d
    hookwire costs --by day --since 2026-11-01 --until 2026-12-01 --json
    hookwire costs --by agent --db postgresql://host/app --user user-123

``--since`` / ``--until`` take an ISO 8601 date or datetime (UTC unless it says otherwise), or
a span back from now: ``30m``, ``24h``, ``7d``; ``today`` is midnight UTC. ``--json`` prints a
JSON array of rows with the group keys, ``calls``, ``prompt_tokens``, ``completion_tokens``,
``cached_tokens``, ``reasoning_tokens``, ``total_tokens``, ``cost`` (an exact decimal number,
or ``null`` when no call of the group had a known price), ``currency``,
``unknown_cost_calls``, and ``estimated_calls``, ``estimated_tokens`` and ``estimated_cost``.

Calls whose provider sent no usage (a stream without its usage chunk, or stopped early) are
shown apart, never as free: the table's "usage unknown" column counts them and "estimate ≤"
gives the upper bound budgets charged for them; the token and cost columns are the known
figures only.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any

import orjson
import typer

from .command import Command
from .database import DbOption, database_url, run, sqlite_file

__all__ = ["costs", "parse_when", "register", "render_json", "render_table"]

#: What ``--by`` takes: ``hookwire.stores.ledger.GROUP_KEYS``, spelled out here so that
#: ``hookwire --help`` does not import the stores (and SQLAlchemy).
GROUP_KEYS = ("user", "org", "agent", "model", "provider", "day", "month")

_SPAN = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """``--since``/``--until``: an ISO date or datetime (UTC unless it says otherwise),
    ``today``, or a span back from ``now`` (``30m``, ``24h``, ``7d``, ``2w``). Raises
    ``typer.BadParameter`` otherwise."""
    if value is None:
        return None
    now = now or datetime.now(timezone.utc)
    text = value.strip().lower()
    if text == "today":
        return now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    span = _SPAN.match(text)
    try:
        if span:
            return now - timedelta(**{_UNITS[span.group(2)]: int(span.group(1))})
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when
        when.astimezone(timezone.utc)  # a time that has no UTC date (year 1, east of UTC)
        return when
    except OverflowError:
        raise typer.BadParameter(
            f"{value!r} is outside the dates hookwire can use (years 1 to 9999, in UTC); use "
            "a date within them or a shorter span, or leave the option out for everything"
        ) from None
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a time; use an ISO date (2026-11-01), a datetime "
            "(2026-11-01T08:00:00Z), 'today', or a span back from now (30m, 24h, 7d, 2w)"
        ) from None


def _money_text(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:f}"


def render_json(rows: list[dict[str, Any]]) -> str:
    """The rows as a JSON array; costs are exact decimal numbers (not rounded floats)."""
    out = []
    for row in rows:
        item = dict(row)
        cost = item.get("cost")
        item["cost"] = None if cost is None else orjson.Fragment(f"{cost:f}".encode())
        estimate = item.get("estimated_cost")
        if estimate is not None:
            item["estimated_cost"] = orjson.Fragment(f"{estimate:f}".encode())
        out.append(item)
    return orjson.dumps(out, option=orjson.OPT_INDENT_2).decode()


def render_table(rows: list[dict[str, Any]], by: list[str]) -> Any:
    """The rows as a ``rich`` table (token counts, cost with its currency, the calls whose
    price is unknown, and apart the calls whose usage is unknown with their estimate), with a
    total line per currency when there are groups."""
    from rich.table import Table

    # Estimated calls are also of unknown cost; the "unpriced" column counts the others.
    unpriced = any(row["unknown_cost_calls"] - row.get("estimated_calls", 0) for row in rows)
    estimated = any(row.get("estimated_calls") for row in rows)
    table = Table(title="LLM usage and cost", title_justify="left")
    for key in by:
        table.add_column(key, no_wrap=True, overflow="fold")
    for name in ("calls", "prompt tokens", "completion tokens", "cost"):
        table.add_column(name, justify="right", overflow="fold")
    if unpriced:
        table.add_column("unpriced calls", justify="right", overflow="fold")
    if estimated:
        table.add_column("usage unknown", justify="right", overflow="fold")
        table.add_column("estimate ≤", justify="right", overflow="fold")

    def cells(
        calls: int,
        prompt: int,
        completion: int,
        cost: Any,
        cur: str,
        unknown: int,
        guessed: int,
        estimate: Any,
    ) -> list[str]:
        out = [
            f"{calls:,}",
            f"{prompt:,}",
            f"{completion:,}",
            "-" if cost is None else f"{_money_text(cost)} {cur}",
        ]
        if unpriced:
            out.append(f"{unknown - guessed:,}" if unknown - guessed else "")
        if estimated:
            out.append(f"{guessed:,}" if guessed else "")
            out.append("" if estimate is None else f"{_money_text(estimate)} {cur}")
        return out

    totals: dict[str, list[Any]] = {}
    for row in rows:
        table.add_row(
            *[str(row.get(k) if row.get(k) is not None else "-") for k in by],
            *cells(
                row["calls"],
                row["prompt_tokens"],
                row["completion_tokens"],
                row["cost"],
                row["currency"],
                row["unknown_cost_calls"],
                row.get("estimated_calls", 0),
                row.get("estimated_cost"),
            ),
        )
        t = totals.setdefault(row["currency"], [0, 0, 0, None, 0, 0, None])
        t[0] += row["calls"]
        t[1] += row["prompt_tokens"]
        t[2] += row["completion_tokens"]
        if row["cost"] is not None:
            t[3] = row["cost"] if t[3] is None else t[3] + row["cost"]
        t[4] += row["unknown_cost_calls"]
        t[5] += row.get("estimated_calls", 0)
        if row.get("estimated_cost") is not None:
            t[6] = row["estimated_cost"] if t[6] is None else t[6] + row["estimated_cost"]
    if by and len(rows) > 1:
        table.add_section()
        for currency, (calls, prompt, completion, cost, unknown, guessed, estimate) in sorted(
            totals.items()
        ):
            table.add_row(
                "total",
                *([""] * (len(by) - 1)),
                *cells(calls, prompt, completion, cost, currency, unknown, guessed, estimate),
            )
    return table


def _groups(by: list[str] | None) -> list[str]:
    groups: list[str] = []
    for item in by or []:
        for name in item.split(","):
            name = name.strip().lower()
            if name and name not in GROUP_KEYS:
                raise typer.BadParameter(
                    f"cannot group by {name!r}; choose from {', '.join(GROUP_KEYS)}",
                    param_hint="'--by'",
                )
            if name and name not in groups:
                groups.append(name)
    return groups


def costs(
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help=f"Group by (repeat to nest): {', '.join(GROUP_KEYS)}.",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_when,
            metavar="WHEN",
            help="From this time: 2026-11-01, 2026-11-01T08:00Z, today, 7d, 24h.",
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            parser=parse_when, metavar="WHEN", help="Up to (not including) this time; same forms."
        ),
    ] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's calls.")] = None,
    org: Annotated[str | None, typer.Option(help="Only this org's calls.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent's calls.")] = None,
    model: Annotated[str | None, typer.Option(help="Only calls to this model.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON rows instead of a table.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Show what the LLM calls in the usage ledger cost."""
    groups = _groups(by)
    where = {
        k: v
        for k, v in {"user": user, "org": org, "agent": agent, "model": model}.items()
        if v is not None
    }
    rows = None
    path = sqlite_file(db)
    if path is not None:
        # An SQLite file at the schema's head is read through sqlite3: no SQLAlchemy to import.
        from ..stores.ledger.sqlite_read import summary

        rows = summary(path, groups, since=since, until=until, where=where)
    if rows is None:
        from ..stores.ledger import UsageLedger

        ledger = UsageLedger.for_url(database_url(db, must_exist=True))
        rows = run(ledger.summary(groups, since=since, until=until, where=where))
    if as_json:
        typer.echo(render_json(rows))
        return
    if not rows:
        typer.echo("No LLM usage recorded for this selection.")
        return
    from rich.console import Console

    Console().print(render_table(rows, groups))


def register(app: typer.Typer) -> None:
    """Add ``hookwire costs`` to ``app``."""
    app.command("costs", cls=Command)(costs)
