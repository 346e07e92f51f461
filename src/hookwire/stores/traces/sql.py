"""The trace store on SQLAlchemy Core, for SQLite and PostgreSQL alike (each dialect gives
its ``insert`` for ``ON CONFLICT``).

A span is written as an upsert merged column by column (``hookwire.stores.traces.spans``:
the start's values stay, the end's fill in, retries add up), so the write path never reads.
Lists are keyset pages on ``(started_at, span_id)`` over indexes made for them (roots only
for the runs list: ``hookwire.stores.schema``), never ``OFFSET``.
"""

from __future__ import annotations

import abc
import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

import orjson
from sqlalchemy import (
    ColumnElement,
    and_,
    column,
    delete,
    exists,
    func,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from ...errors import InvalidInputError
from ..conversations import Page
from ..engine import get_engine, get_write_engine, json_loads
from ..schema import span_contents, span_latency, span_rollups, spans
from ..sqlstore import SQLStore
from .api import RunFilter, TraceStore
from .rollups import ENDED, READ_COLUMNS, Rollup, Upserts, hour_of, hours_between, quantile
from .rollups import rebuild as rebuild_rollups
from .spans import ADDED, CONTENT, FIRST, merge

__all__ = ["PostgresTraceStore", "SQLTraceStore", "SQLiteTraceStore", "Statements"]

_s = spans.c
_COLUMNS = [c.name for c in spans.columns]
_LIST = list(spans.columns)
#: Spans deleted per statement while pruning (a transaction each: writers are not held long).
PRUNE_BATCH = 5000
_MAX_CURSOR = 512
#: Matches of a search looked up by key at most (more: the runs are walked; SQLite builds
#: before 3.32 take 999 parameters).
SEARCH_FEW = 500
#: Span ids looked up per statement (SQLite builds before 3.32 allow 999 parameters).
_LOOKUP = 900
_READ = [_s[c] for c in READ_COLUMNS]


class Statements:
    """The upserts, built once per dialect (SQLAlchemy then compiles each once)."""

    def __init__(self, insert: Callable[[Any], Any]) -> None:
        self.rollups = Upserts(insert)
        up = insert(spans)
        ex = up.excluded
        merged: dict[str, Any] = {}
        for name in _COLUMNS:
            if name == "span_id":
                continue
            if name in FIRST:
                merged[name] = func.coalesce(_s[name], ex[name])
            elif name in ADDED:
                merged[name] = _s[name] + ex[name]
            elif name == "status":  # a late "running" (a retry's patch) never reopens a span
                merged[name] = func.coalesce(func.nullif(ex[name], "running"), _s[name])
            elif name == "input_preview":
                merged[name] = func.coalesce(_s[name], ex[name])
            else:
                merged[name] = func.coalesce(ex[name], _s[name])
        self.spans = up.on_conflict_do_update(index_elements=["span_id"], set_=merged)
        cup = insert(span_contents)
        cex = cup.excluded
        c = span_contents.c
        self.contents = cup.on_conflict_do_update(
            index_elements=["span_id"],
            set_={
                "input": func.coalesce(c.input, cex.input),
                "output": func.coalesce(cex.output, c.output),
            },
        )


def encode_cursor(at: datetime, span_id: str) -> str:
    """The cursor of the page after the span ``span_id`` that started at ``at``."""
    raw = orjson.dumps([at.isoformat(timespec="microseconds"), span_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """``(started_at, span_id)`` of a cursor :func:`encode_cursor` made; anything else raises
    ``InvalidInputError``."""
    if cursor is None or cursor == "":
        return None
    try:
        if not cursor.isascii() or len(cursor) > _MAX_CURSOR:
            raise ValueError(cursor)
        at, span_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(at), str(span_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidInputError(
            "the page cursor is not one this store made; pass the next_cursor of the page "
            "before, or none for the first page"
        ) from None


def _row(row: Any) -> dict[str, Any]:
    # plain str keys: SQLAlchemy's are a str subclass, which JSON encoders may refuse
    return {str(k): v for k, v in row._mapping.items()}


class SQLTraceStore(SQLStore, TraceStore):
    """Spans in an SQL database (see the module)."""

    statements: ClassVar[Statements]
    _dialect: ClassVar[str] = "postgresql"

    async def open(self) -> None:
        """Check the schema and connect once (the pool keeps the connection)."""
        await self._connect_once()

    # -- writing ------------------------------------------------------------------------------

    async def record(self, patches: Sequence[Mapping[str, Any]]) -> None:
        if not patches:
            return
        merged: dict[str, dict[str, Any]] = {}
        for patch in patches:
            found = merged.get(patch["span_id"])
            if found is None:
                merged[patch["span_id"]] = dict(patch)
            else:
                merge(found, patch)
        rows: list[dict[str, Any]] = []
        contents: list[dict[str, Any]] = []
        for patch in merged.values():
            row = {name: patch.get(name) for name in _COLUMNS}
            row["retries"] = patch.get("retries") or 0
            row["status"] = patch.get("status") or "running"
            rows.append(row)
            if any(patch.get(k) is not None for k in CONTENT):
                contents.append({"span_id": row["span_id"], **{k: patch.get(k) for k in CONTENT}})
        await self._ready()
        try:
            async with get_write_engine(self.url).begin() as conn:
                rollup = await self._ended(conn, merged)
                await conn.execute(self.statements.spans, rows)
                if contents:
                    await conn.execute(self.statements.contents, contents)
                for statement, sums in self.statements.rollups.statements(rollup):
                    await conn.execute(statement, sums)
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail(f"recording {len(rows)} span(s)", exc) from exc

    async def _ended(self, conn: Any, merged: Mapping[str, dict[str, Any]]) -> Rollup:
        """The rollup of the spans these patches end: each span is counted once, by the
        write that first sees it ended (the stored rows are read, and on PostgreSQL locked,
        so that two writers of one span cannot both count it)."""
        rollup = Rollup()
        ending = [k for k, p in merged.items() if p.get("status") in ENDED]
        if not ending:
            return rollup
        stored: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ending), _LOOKUP):
            query = select(*_READ).where(_s.span_id.in_(ending[i : i + _LOOKUP]))
            for row in (await conn.execute(query.with_for_update())).all():
                stored[row.span_id] = {k: v for k, v in row._mapping.items() if v is not None}
        for span_id in ending:
            before = stored.get(span_id)
            if before is not None and before["status"] in ENDED:
                continue  # counted when it ended
            span = before or {}
            merge(span, merged[span_id])
            rollup.add(span)
        return rollup

    async def prune(self, *, before: datetime | None = None, max_spans: int | None = None) -> int:
        if max_spans is not None and max_spans < 0:
            raise InvalidInputError(f"max_spans must be 0 or more, not {max_spans}")
        await self._ready()
        deleted = 0
        try:
            if before is not None:
                deleted += await self._delete_before(before)
            if max_spans is not None:
                over = await self.count() - max_spans
                if over > 0:
                    # Spans whose run was never stored (its start lost to a killed process or
                    # a full queue) cannot be opened from the runs list: they go first.
                    n = await self._delete_orphans(over)
                    deleted += n
                    over -= n
                while over > 0:
                    cutoff = await self._cutoff(over)
                    if cutoff is None:
                        break
                    n = await self._delete_before(cutoff, inclusive=True)
                    deleted += n
                    over -= n
                    if n == 0:
                        break
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("pruning spans", exc) from exc
        return deleted

    async def _cutoff(self, spans_over: int) -> datetime | None:
        """The start of the newest root that must go for ``spans_over`` spans to go (at most
        one batch's worth at a time)."""
        async with get_engine(self.url).connect() as conn:
            rows = (
                await conn.execute(
                    select(_s.started_at, _s.trace_id)
                    .where(_s.parent_id.is_(None))
                    .order_by(_s.started_at, _s.span_id)
                    .limit(min(spans_over, PRUNE_BATCH))
                )
            ).all()
            if not rows:
                return None
            # a trace's spans all go with its root: take roots until enough spans are covered
            total = 0
            for at, trace_id in rows:
                total += (
                    await conn.execute(
                        select(func.count()).select_from(spans).where(_s.trace_id == trace_id)
                    )
                ).scalar_one()
                if total >= spans_over:
                    return at  # type: ignore[no-any-return]
            return rows[-1][0]  # type: ignore[no-any-return]

    async def _delete_orphans(self, most: int) -> int:
        """Delete up to ``most`` of the oldest spans whose trace has no root span."""
        root = spans.alias("root")
        orphans = (
            select(_s.span_id)
            .where(
                _s.parent_id.is_not(None),
                ~select(root.c.span_id)
                .where(root.c.trace_id == _s.trace_id, root.c.parent_id.is_(None))
                .exists(),
            )
            .order_by(_s.started_at)
            .limit(min(most, PRUNE_BATCH))
        )
        deleted = 0
        while deleted < most:
            async with get_engine(self.url).connect() as conn:
                ids = list((await conn.execute(orphans)).scalars())
            if not ids:
                break
            ids = ids[: most - deleted]
            deleted += await self._delete_where(_s.span_id.in_(ids))
        return deleted

    async def _delete_before(self, before: datetime, inclusive: bool = False) -> int:
        old = _s.started_at <= before if inclusive else _s.started_at < before
        traces = select(_s.trace_id).where(_s.parent_id.is_(None), old).scalar_subquery()
        return await self._delete_where(or_(_s.trace_id.in_(traces), old))

    async def _delete_where(self, going: ColumnElement[bool]) -> int:
        """Delete the spans ``going`` selects, their contents, and recount their hours."""
        deleted = 0
        async with get_write_engine(self.url).begin() as conn:
            lo, hi = (
                await conn.execute(
                    select(func.min(_s.started_at), func.max(_s.started_at)).where(going)
                )
            ).one()
            if lo is None:
                return 0
            # contents first (SQLite deletes cascade only with foreign keys on; both are sure)
            doomed = select(_s.span_id).where(going)
            await conn.execute(delete(span_contents).where(span_contents.c.span_id.in_(doomed)))
            result = await conn.execute(delete(spans).where(going))
            deleted += result.rowcount or 0
            # the hours the deleted spans were counted in, recounted from what is left
            await conn.run_sync(rebuild_rollups, *hours_between(lo, hi))
        return deleted

    async def rebuild_rollups(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> int:
        await self._ready()
        try:
            async with get_write_engine(self.url).begin() as conn:
                return int(await conn.run_sync(rebuild_rollups, since, until))
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("rebuilding the trace rollups", exc) from exc

    # -- reading ------------------------------------------------------------------------------

    async def runs(
        self, where: RunFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        limit = _limit(limit)
        where = where or RunFilter()
        conds: list[ColumnElement[bool]] = [_s.parent_id.is_(None)]  # first (see below)
        for name in ("user_id", "model", "agent", "status"):
            value = getattr(where, name)
            if value:
                conds.append(_s[name] == value)
        if where.since is not None:
            conds.append(_s.started_at >= where.since)
        if where.until is not None:
            conds.append(_s.started_at < where.until)
        if where.min_cost is not None:
            conds.append(_s.cost >= where.min_cost)
        found = None
        if where.search:
            found = await self._found(where.search)
            if found is not None and not found:
                return Page([], None)
            conds.append(self._search(where.search) if found is None else _s.span_id.in_(found))
        after = decode_cursor(cursor)
        if after is not None:
            at, span_id = after
            conds.append(or_(_s.started_at < at, and_(_s.started_at == at, _s.span_id < span_id)))
        if found is not None:
            # the few spans found, by key, then ordered: behind the OFFSET fence no planner
            # walks the runs newest first testing each against the list (PostgreSQL's choice
            # on a table without statistics: every run read for a word in ten) ...
            # and the roots' term outside it, so that no partial index of the roots is taken
            few = select(*_LIST).where(*conds[1:]).offset(0).subquery()
            query = (
                select(*few.c)
                .where(few.c.parent_id.is_(None))
                .order_by(few.c.started_at.desc(), few.c.span_id.desc())
                .limit(limit + 1)
            )
            return await self._page(query, limit)
        query = (
            select(*_LIST)
            .where(*conds)
            .order_by(_s.started_at.desc(), _s.span_id.desc())
            .limit(limit + 1)
        )
        return await self._page(query, limit, in_order=True)

    def _search(self, words: str) -> ColumnElement[bool]:
        """Runs whose input or output holds ``words`` (case-insensitively, in any language),
        for a word in many runs (:meth:`_found` serves the rare ones): each run, newest first,
        is tested against its own contents (``_content_search`` on that row alone), so the
        page stops at its 50th match; text shorter than a trigram is looked for in the
        previews."""
        if len(words) >= 3:
            mine = self._content_search(words).where(span_contents.c.span_id == _s.span_id)
            # OFFSET: a fence, so that PostgreSQL keeps the test per run instead of joining
            # all the word's matches first (its choice on a table without statistics)
            return exists(mine.offset(0))
        pattern = "%" + _escape_like(words.lower()) + "%"
        return or_(
            func.lower(_s.input_preview).like(pattern, escape="\\"),
            func.lower(_s.output_preview).like(pattern, escape="\\"),
        )

    @abc.abstractmethod
    def _content_search(self, words: str) -> Any:
        """A query of the ``span_id`` of the contents holding ``words`` (3 characters or more)."""

    async def _found(self, words: str) -> list[str] | None:
        """The spans whose contents hold ``words`` when they are few (at most
        :data:`SEARCH_FEW`), found through the trigram index alone; ``None`` when they are
        more, or ``words`` is too short for trigrams.

        The runs list then looks up those few spans by key: a rare word costs what its
        matches do, whatever the statistics say (a planner that walks the runs newest first
        and tests each against the matches reads every run for a word in none). A common
        word is searched the other way, by walking the runs: its matches come soon."""
        if len(words) < 3:
            return None
        await self._ready()
        try:
            async with get_engine(self.url).connect() as conn:
                await self._index_only(conn)
                query = self._content_search(words).limit(SEARCH_FEW + 1)
                ids = [r[0] for r in (await conn.execute(query)).all()]
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("searching contents", exc) from exc
        return ids if len(ids) <= SEARCH_FEW else None

    async def _index_only(self, conn: Any) -> None:
        """Make ``conn``'s transaction read contents through the trigram index only."""

    async def _reading(self, conn: Any, in_order: bool) -> None:
        """Settings of ``conn``'s transaction for a page (``in_order``: of runs, read by
        walking an index in the page's order)."""

    async def children(
        self,
        trace_id: str,
        parent_id: str | None = None,
        *,
        limit: int = 200,
        cursor: str | None = None,
    ) -> Page:
        limit = _limit(limit)
        inner = spans.alias("inner")
        below = (
            select(func.count())
            .select_from(inner)
            .where(inner.c.parent_id == _s.span_id)
            .scalar_subquery()
            .label("children")
        )
        # A span's children are in its trace: by the parent alone, whose index gives them in
        # order (with the trace's too, PostgreSQL without statistics gathers and sorts them all)
        conds: list[ColumnElement[bool]] = (
            [_s.trace_id == trace_id, _s.parent_id.is_(None)]
            if parent_id is None
            else [_s.parent_id == parent_id]
        )
        after = decode_cursor(cursor)
        if after is not None:
            at, span_id = after
            conds.append(or_(_s.started_at > at, and_(_s.started_at == at, _s.span_id > span_id)))
        query = (
            select(*_LIST, below).where(*conds).order_by(_s.started_at, _s.span_id).limit(limit + 1)
        )
        return await self._page(query, limit)

    async def _page(self, query: Any, limit: int, in_order: bool = False) -> Page:
        await self._ready()
        try:
            async with get_engine(self.url).connect() as conn:
                await self._reading(conn, in_order)
                rows = [_row(r) for r in (await conn.execute(query)).all()]
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading spans", exc) from exc
        more = len(rows) > limit
        rows = rows[:limit]
        following = encode_cursor(rows[-1]["started_at"], rows[-1]["span_id"]) if more else None
        return Page(rows, following)

    async def span(self, span_id: str) -> dict[str, Any] | None:
        await self._ready()
        c = span_contents.c
        query = (
            select(*_LIST, c.input, c.output)
            .select_from(spans.outerjoin(span_contents, c.span_id == _s.span_id))
            .where(_s.span_id == span_id)
        )
        try:
            async with get_engine(self.url).connect() as conn:
                row = (await conn.execute(query)).first()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading a span", exc) from exc
        if row is None:
            return None
        out = _row(row)
        for key in CONTENT:
            if out[key] is not None:
                out[key] = json_loads(out[key])
        return out

    async def health(self, since: datetime) -> dict[str, Any]:
        await self._ready()
        r, h = span_rollups.c, span_latency.c
        first = hour_of(since)
        recent = r.hour >= first
        total = func.sum(r.spans)
        kinds = select(r.kind, r.status, total.label("spans")).where(recent)
        errors = (
            select(r.error_type, total.label("count"))
            .where(recent, r.status == "error", r.kind != "retry")
            .group_by(r.error_type)
            .order_by(total.desc())
        )
        retries = select(func.coalesce(total, 0)).where(recent, r.kind == "retry")
        calls = (
            select(r.hour, r.status, total.label("calls"))
            .where(recent, r.kind == "llm")
            .group_by(r.hour, r.status)
        )
        hist = (
            select(h.hour, h.metric, h.bucket, func.sum(h.spans).label("spans"))
            .where(h.hour >= first, h.kind == "llm")
            .group_by(h.hour, h.metric, h.bucket)
        )
        try:
            async with get_engine(self.url).connect() as conn:
                found = {
                    "kinds": [
                        {**_row(x), "spans": int(x.spans)}
                        for x in await conn.execute(kinds.group_by(r.kind, r.status))
                    ],
                    "errors": [
                        {"error_type": x.error_type or None, "count": int(x[1])}
                        for x in await conn.execute(errors)
                    ],
                    "retries": int((await conn.execute(retries)).scalar_one()),
                }
                call_rows = (await conn.execute(calls)).all()
                hist_rows = (await conn.execute(hist)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading health figures", exc) from exc
        hours: dict[datetime, dict[str, Any]] = {}

        def at(hour: datetime) -> dict[str, Any]:
            return hours.setdefault(hour, {"calls": 0, "errors": 0, "latency": {}, "ttft": {}})

        whole: dict[str, Any] = {"calls": 0, "errors": 0, "latency": {}, "ttft": {}}
        for hour, status, n in call_rows:
            for into in (at(hour), whole):
                into["calls"] += int(n)
                if status == "error":
                    into["errors"] += int(n)
        for hour, metric, b, n in hist_rows:
            for into in (at(hour), whole):
                into[metric][b] = into[metric].get(b, 0) + int(n)
        found["llm"] = _figures(whole)
        found["series"] = [{"hour": k, **_figures(v)} for k, v in sorted(hours.items())]
        return found

    async def usage(self, since: datetime) -> list[dict[str, Any]]:
        await self._ready()
        r = span_rollups.c
        day = func.date(r.hour) if self._dialect == "sqlite" else func.date_trunc("day", r.hour)
        query = (
            select(
                day.label("day"),
                r.model,
                r.currency,
                func.sum(r.spans).label("calls"),
                *(func.sum(r[n]).label(n) for n in _TOKEN_COLUMNS),
                func.sum(r.cost).label("cost"),
            )
            .where(r.hour >= hour_of(since), r.kind == "llm")
            .group_by(day, r.model, r.currency)
            .order_by(day, r.model)
        )
        try:
            async with get_engine(self.url).connect() as conn:
                rows = (await conn.execute(query)).all()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("reading token usage", exc) from exc
        out = []
        for row in rows:
            item = _row(row)
            when = item["day"]
            item["day"] = when if isinstance(when, str) else when.date().isoformat()
            for n in ("calls", *_TOKEN_COLUMNS):
                item[n] = int(item[n])
            item["model"] = item["model"] or None
            item["currency"] = item["currency"] or None
            out.append(item)
        return out

    async def count(self) -> int:
        await self._ready()
        try:
            async with get_engine(self.url).connect() as conn:
                n = (await conn.execute(select(func.count()).select_from(spans))).scalar_one()
        except (SQLAlchemyError, OSError) as exc:
            raise self._fail("counting spans", exc) from exc
        return int(n)


_TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")


def _figures(hist: Mapping[str, Any]) -> dict[str, Any]:
    """Calls, errors and latency and time-to-first-token percentiles of merged rollups."""
    return {
        "calls": hist["calls"],
        "errors": hist["errors"],
        **{f"latency_p{q}": quantile(hist["latency"], q / 100) for q in (50, 95, 99)},
        **{f"ttft_p{q}": quantile(hist["ttft"], q / 100) for q in (50, 95, 99)},
    }


def _limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
        raise InvalidInputError(f"limit must be a number from 1 to 10000, not {limit!r}")
    return limit


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: SQLite's full-text index of the contents (migration 0006_traces; not in the metadata).
_SPAN_SEARCH = table("span_search", column("rowid"), column("span_search"))


class SQLiteTraceStore(SQLTraceStore):
    """Spans in an SQLite file."""

    _dialect = "sqlite"

    statements = Statements(sqlite_insert)

    def _content_search(self, words: str) -> Any:
        # one FTS5 phrase of the trigram tokenizer: a substring, case-insensitive; the
        # full-text index's matches drive the join (each looked up by key)
        phrase = '"' + words.replace('"', '""') + '"'
        c = span_contents.c
        return (
            select(c.span_id)
            .select_from(_SPAN_SEARCH.join(span_contents, c.seq == _SPAN_SEARCH.c.rowid))
            .where(_SPAN_SEARCH.c.span_search.match(phrase))
        )


class PostgresTraceStore(SQLTraceStore):
    """Spans in PostgreSQL."""

    statements = Statements(postgres_insert)

    async def _reading(self, conn: Any, in_order: bool) -> None:
        # No JIT: a page reads a few hundred rows, yet a plan costed without statistics (or
        # with a subquery per row) passes jit_above_cost, and compiling took 0.45 s of the
        # 0.46 s a 10,000-span trace's first level took.
        await conn.execute(text("SET LOCAL jit = off"))
        if not in_order:
            return
        # A page of runs is the newest few of those that pass: walking an index of the runs
        # (its filter's, else all runs') newest first stops at the page's end. Without
        # statistics the planner takes a filter's matches as few and gathers, then sorts,
        # them all instead (0.5 s for one model's errors at 1,000,000 runs).
        await conn.execute(text("SET LOCAL enable_sort = off"))
        await conn.execute(text("SET LOCAL enable_bitmapscan = off"))

    async def _index_only(self, conn: Any) -> None:
        # With LIMIT and no statistics (a table just loaded, or a generic plan), the planner
        # may take a scan of every content as cheaper than the pg_trgm index; for this
        # transaction alone, it is not.
        await conn.execute(text("SET LOCAL enable_seqscan = off"))

    def _content_search(self, words: str) -> Any:
        # written as the pg_trgm index of migration 0006_traces is, so that the planner uses it
        matches = text(
            "(coalesce(span_contents.input, '') || ' ' || coalesce(span_contents.output, '')) "
            "ILIKE :pattern"
        ).bindparams(pattern="%" + _escape_like(words) + "%")
        return select(span_contents.c.span_id).where(matches)
