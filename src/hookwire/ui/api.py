"""The dashboard's JSON API: what each page asks for, read through the store interfaces
(``TraceStore``, ``UsageLedger``, ``ConversationStore``), so that SQLite and PostgreSQL both
serve it. Read-only: nothing here writes.

Routes (all ``GET``, answers JSON; a bad parameter is a 400 saying which and why):

- ``/api/runs``: runs, newest first, a keyset page (``cursor``, ``limit``) filtered by
  ``user``, ``model``, ``agent``, ``status``, ``since``/``until`` (ISO 8601, UTC unless said),
  ``min_cost`` and ``q`` (text in the input or output preview).
- ``/api/trace/<trace id>/children``: the spans under ``parent`` (none: the trace's roots), a
  page at a time, each with how many children it has: a trace opens one level at a time.
- ``/api/span/<span id>``: one span with its whole input and output.
- ``/api/costs?days=30``: spend by day and model, totals by user, org, agent and model, tokens
  by kind, and spend against the budgets the dashboard was given (``hookwire.ui.spend``);
  ``traced``: the traces' calls, tokens by kind and cost per day and model.
- ``/api/health?hours=24``: calls, errors by type, retries, latency and time to first token
  percentiles (p50, p95, p99), and the same per hour, from the traces' hourly rollups (whole
  hours: the window starts at the top of its first hour).
- ``/api/conversations`` and ``/api/conversation/<id>``: the chat history, each message
  linked to its run.
- ``/api/runs/since?after=<ISO time>``: the runs that started after a time (the live view).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar

from ..errors import HookwireError, InvalidInputError, NotFoundError
from ..stores import runner
from .spend import BudgetLine, spend_against

__all__ = ["ApiError", "DashboardApi", "percentile"]

T = TypeVar("T")
_UTC = timezone.utc
#: Seconds a read may take before the page is told the database does not answer.
READ_TIMEOUT: Final = 30.0
_STATUSES: Final = ("running", "ok", "error")


class ApiError(Exception):
    """An answer other than 200: ``status`` and a message saying what to change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0 to 1) of ``values`` by nearest rank (``None`` for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    value = values[-1].strip()
    return value or None


def _time(query: Mapping[str, Sequence[str]], name: str) -> datetime | None:
    text = _one(query, name)
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, f"{name}={text!r} is not a time; use ISO 8601 (2026-11-01T08:00)"
        ) from None
    return when.replace(tzinfo=_UTC) if when.tzinfo is None else when


def _int(query: Mapping[str, Sequence[str]], name: str, default: int, top: int) -> int:
    text = _one(query, name)
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= top:
        raise ApiError(400, f"{name}={text!r} must be a whole number from 1 to {top}")
    return int(text)


def _plain(span: dict[str, Any]) -> dict[str, Any]:
    """A span for the page: times also as milliseconds since the epoch (for the waterfall)."""
    start, end = span.get("started_at"), span.get("ended_at")
    span["start_ms"] = start.timestamp() * 1000 if start is not None else None
    span["end_ms"] = end.timestamp() * 1000 if end is not None else None
    return span


class DashboardApi:
    """The API over the database ``url``, showing ``budgets`` in the cost view."""

    def __init__(self, url: str, budgets: Sequence[BudgetLine] = ()) -> None:
        from ..stores.traces import TraceStore

        self.url = url
        self.budgets = list(budgets)
        self.traces = TraceStore.for_url(url)
        self._routes: list[tuple[re.Pattern[str], Callable[..., Any]]] = [
            (re.compile(r"/api/runs"), self.runs),
            (re.compile(r"/api/runs/since"), self.runs_since),
            (re.compile(r"/api/trace/([^/]+)/children"), self.children),
            (re.compile(r"/api/span/([^/]+)"), self.span),
            (re.compile(r"/api/costs"), self.costs),
            (re.compile(r"/api/health"), self.health),
            (re.compile(r"/api/conversations"), self.conversations),
            (re.compile(r"/api/conversation/([^/]+)"), self.conversation),
        ]

    def get(self, path: str, query: Mapping[str, Sequence[str]]) -> Any:
        """The answer to ``GET path?query`` (raises :class:`ApiError` for anything but 200)."""
        from urllib.parse import unquote

        for pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match:
                try:
                    return handler(query, *(unquote(g) for g in match.groups()))
                except InvalidInputError as exc:
                    raise ApiError(400, str(exc)) from None
                except NotFoundError as exc:
                    raise ApiError(404, str(exc)) from None
                except HookwireError as exc:
                    raise ApiError(503, str(exc)) from None
        raise ApiError(404, f"no such API route: {path}")

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return runner.run_sync(coro, READ_TIMEOUT)

    # -- traces -------------------------------------------------------------------------------

    def runs(self, query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        from ..stores.traces import RunFilter

        status = _one(query, "status")
        if status is not None and status not in _STATUSES:
            raise ApiError(400, f"status={status!r}: use one of {', '.join(_STATUSES)}")
        min_cost = None
        text = _one(query, "min_cost")
        if text is not None:
            try:
                min_cost = Decimal(text)
            except InvalidOperation:
                raise ApiError(400, f"min_cost={text!r} is not an amount (0.05)") from None
        where = RunFilter(
            user_id=_one(query, "user"),
            model=_one(query, "model"),
            agent=_one(query, "agent"),
            status=status,
            since=_time(query, "since"),
            until=_time(query, "until"),
            min_cost=min_cost,
            search=_one(query, "q"),
        )
        page = self._run(
            self.traces.runs(
                where, limit=_int(query, "limit", 50, 500), cursor=_one(query, "cursor")
            )
        )
        return {"items": [_plain(r) for r in page.items], "next_cursor": page.next_cursor}

    def runs_since(self, query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        from ..stores.traces import RunFilter

        after = _time(query, "after") or datetime.now(_UTC) - timedelta(minutes=5)
        # strictly after: the newest run the page has is not sent again
        page = self._run(
            self.traces.runs(RunFilter(since=after + timedelta(microseconds=1)), limit=100)
        )
        return {"items": [_plain(r) for r in page.items]}

    def children(self, query: Mapping[str, Sequence[str]], trace_id: str) -> dict[str, Any]:
        page = self._run(
            self.traces.children(
                trace_id,
                _one(query, "parent"),
                limit=_int(query, "limit", 200, 1000),
                cursor=_one(query, "cursor"),
            )
        )
        return {"items": [_plain(r) for r in page.items], "next_cursor": page.next_cursor}

    def span(self, query: Mapping[str, Sequence[str]], span_id: str) -> dict[str, Any]:
        found = self._run(self.traces.span(span_id))
        if found is None:
            raise ApiError(404, f"there is no span {span_id!r} (pruned, or never recorded)")
        return _plain(found)

    # -- costs and health ---------------------------------------------------------------------

    def costs(self, query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        from ..stores.ledger import UsageLedger

        ledger = UsageLedger.for_url(self.url)
        days = _int(query, "days", 30, 3660)
        since = (datetime.now(_UTC) - timedelta(days=days - 1)).date()

        async def read() -> dict[str, Any]:
            out: dict[str, Any] = {"days": days}
            out["by_day"] = await ledger.summary(["day", "model"], since=since)
            for key in ("user", "org", "agent", "model"):
                rows = await ledger.summary(key, since=since)
                out[f"by_{key}"] = sorted(rows, key=lambda r: r["cost"] or 0, reverse=True)
            out["total"] = await ledger.summary((), since=since)
            out["budgets"] = [r for b in self.budgets for r in await spend_against(ledger, b)]
            # tokens by kind per day and model, as the traces' hourly rollups have them
            out["traced"] = await self.traces.usage(datetime.combine(since, time(), _UTC))
            return out

        return self._run(read())

    def health(self, query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        hours = _int(query, "hours", 24, 24 * 90)
        found = self._run(self.traces.health(datetime.now(_UTC) - timedelta(hours=hours)))
        found["hours"] = hours
        return found

    # -- conversations ------------------------------------------------------------------------

    def conversations(self, query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
        from ..stores.conversations import ConversationStore

        store = ConversationStore.for_url(self.url)
        page = self._run(
            store.list_conversations(
                None,
                limit=_int(query, "limit", 50, 500),
                cursor=_one(query, "cursor"),
                user_id=_one(query, "user"),
            )
        )
        return {"items": page.items, "next_cursor": page.next_cursor}

    def conversation(self, query: Mapping[str, Sequence[str]], conversation_id: str) -> Any:
        from ..stores.conversations import ConversationStore

        store = ConversationStore.for_url(self.url)
        return self._run(store.get_conversation_details(None, conversation_id))
