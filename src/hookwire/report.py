"""``hookwire report``: summarise JSONL logs written by ``FileLogCallback``.

One streaming pass over any number of logs (rotated backups and gzip files too, ``-`` for
stdin), in memory that depends on the number of groups, not of lines: per group (model,
agent, user or day) it counts LLM calls, tokens, cost, errors and retries, and keeps latency
in a DDSketch for p50/p95 (for the first ``SKETCHED_GROUPS`` groups: past them a group's
latencies count in the total only, so memory stays near 100 bytes per further group). A line
that is not valid JSON or does not follow the schema is counted and reported with its file
and line number; it never stops the report, and adds nothing to the figures. That includes a
line whose figures no hookwire writes: a timestamp outside the years 1 to 9999, a cost that
is not a finite amount from 0 to ``MAX_LINE_COST``, a token count that is not a whole number
from 0 to 2**63 - 1, a latency that is not a number of milliseconds from 0 to
``MAX_LATENCY_MS``. So NaN and infinity never enter a sum.
"""

from __future__ import annotations

import gzip
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Final, Literal, cast

import orjson
from ddsketch import DDSketch

from .errors import ConfigurationError, LogFormatError
from .logschema import SCHEMA_VERSION
from .terminal import visible

__all__ = [
    "GROUPINGS",
    "MAX_LATENCY_MS",
    "MAX_LINE_COST",
    "SKETCHED_GROUPS",
    "BrokenLine",
    "GroupBy",
    "GroupStats",
    "Report",
    "render",
    "render_json",
    "summarize",
]

GroupBy = Literal["model", "agent", "user", "day"]
#: What a report can group by (``summarize(by=...)``).
GROUPINGS: tuple[str, ...] = ("model", "agent", "user", "day")
#: How many groups keep latency percentiles (a DDSketch of about 3 KB each); the groups past
#: it report ``-`` for p50/p95, and their latencies still count in the total.
SKETCHED_GROUPS: Final = 10_000
_MAX_BROKEN_KEPT = 20
_MAX_IN_FLIGHT = 100_000
_NONE = "(none)"
_COUNTED = frozenset({"llm_end", "llm_error", "retry", "llm_start"})
#: The largest cost one line may carry (in its currency); a larger one is a broken line.
MAX_LINE_COST: Final = Decimal(10**9)
#: The longest latency one line may carry, in milliseconds (a year); longer is a broken line.
MAX_LATENCY_MS: Final = 365 * 86_400_000.0
_MAX_TOKENS = 2**63 - 1
# Timestamps from 0001-01-01 to 9999-12-31 UTC: the days a report can name.
_MIN_TS = -62_135_596_800.0
_MAX_TS = 253_402_300_799.0
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class GroupStats:
    """The figures of one group."""

    key: str
    calls: int = 0
    errors: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal = field(default_factory=lambda: Decimal(0))
    priced_calls: int = 0
    #: ``None`` for a group past :data:`SKETCHED_GROUPS` (its latency counts in the total only).
    latency: DDSketch | None = field(default_factory=lambda: DDSketch(0.01))

    def quantile(self, q: float) -> float | None:
        """Latency quantile ``q`` in ms (``None`` without timed calls or without a sketch)."""
        if self.latency is None or self.latency.count == 0:
            return None
        v = self.latency.get_quantile_value(q)
        return None if v is None else round(float(v), 1)

    @property
    def total_cost(self) -> Decimal | None:
        """The summed cost, ``None`` when no call had a known price."""
        return self.cost if self.priced_calls else None

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values (cost as an exact decimal string or null)."""
        cost = self.total_cost
        return {
            "key": self.key,
            "calls": self.calls,
            "errors": self.errors,
            "retries": self.retries,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost": None if cost is None else str(cost),
            "unpriced_calls": self.calls - self.errors - self.priced_calls,
            "p50_latency_ms": self.quantile(0.5),
            "p95_latency_ms": self.quantile(0.95),
        }


@dataclass(frozen=True)
class BrokenLine:
    """A line that could not be read: where, and why."""

    file: str
    line: int
    error: str


@dataclass
class Report:
    """The result of ``summarize``."""

    by: str
    files: list[str] = field(default_factory=list)
    lines: int = 0
    events: int = 0
    broken: int = 0
    broken_lines: list[BrokenLine] = field(default_factory=list)
    groups: dict[str, GroupStats] = field(default_factory=dict)
    #: The latencies of the groups without a sketch of their own.
    overflow: DDSketch = field(default_factory=lambda: DDSketch(0.01))

    @property
    def total(self) -> GroupStats:
        """All groups added up."""
        t = GroupStats("total")
        for g in self.groups.values():
            t.calls += g.calls
            t.errors += g.errors
            t.retries += g.retries
            t.prompt_tokens += g.prompt_tokens
            t.completion_tokens += g.completion_tokens
            t.total_tokens += g.total_tokens
            t.cost += g.cost
            t.priced_calls += g.priced_calls
            if g.latency is not None:
                t.latency.merge(g.latency)  # type: ignore[union-attr]
        t.latency.merge(self.overflow)  # type: ignore[union-attr]
        return t

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "by": self.by,
            "files": self.files,
            "lines": self.lines,
            "events": self.events,
            "broken": {
                "count": self.broken,
                "lines": [b.__dict__ for b in self.broken_lines],
            },
            "groups": [g.to_dict() for g in sorted(self.groups.values(), key=lambda g: g.key)],
            "total": self.total.to_dict(),
        }


def _with_rotated(path: str) -> list[str]:
    if path == "-":
        return [path]
    backups = []
    i = 1
    while Path(f"{path}.{i}").exists():
        backups.append(f"{path}.{i}")
        i += 1
    # Oldest first, so the report reads events in the order they were written.
    return [*reversed(backups), path]


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    if path.endswith(".gz"):
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return open(path, "rb", buffering=1 << 20)


_EPOCH_DAY_CACHE: dict[int, str] = {}


def _day(ts: float) -> str:
    n = int(ts // 86400)
    day = _EPOCH_DAY_CACHE.get(n)
    if day is None:
        # Not fromtimestamp(): it depends on the platform's time_t, and fails before 1970 on
        # some platforms.
        day = (_EPOCH + timedelta(days=n)).date().isoformat()
        if len(_EPOCH_DAY_CACHE) < 100_000:
            _EPOCH_DAY_CACHE[n] = day
    return day


class _Summarizer:
    def __init__(self, by: str) -> None:
        if by not in GROUPINGS:
            raise ConfigurationError(f"cannot group by {by!r}; use one of: {', '.join(GROUPINGS)}")
        self.report = Report(by=by)
        self.by = by
        # run_id -> group of LLM calls in flight, for events that do not name their model.
        self.in_flight: OrderedDict[str, str] = OrderedDict()

    def _broken(self, file: str, lineno: int, error: str) -> None:
        r = self.report
        r.broken += 1
        if len(r.broken_lines) < _MAX_BROKEN_KEPT:
            r.broken_lines.append(BrokenLine(file, lineno, error))

    def _key(self, rec: dict[str, Any]) -> str:
        by = self.by
        if by == "model":
            model = rec.get("model")
            if model is None:
                data = rec.get("data")
                resp = data.get("response") if isinstance(data, dict) else None
                model = resp.get("model") if isinstance(resp, dict) else None
                if model is None:
                    model = self.in_flight.get(rec.get("run_id", ""), _NONE)
            return str(model)
        if by == "agent":
            return str(rec.get("agent") or _NONE)
        if by == "user":
            return str(rec.get("user_id") or _NONE)
        return _day(rec["timestamp"])

    def _group(self, key: str) -> GroupStats:
        g = self.report.groups.get(key)
        if g is None:
            # A sketch is kilobytes: past SKETCHED_GROUPS groups (250,000 users...), new groups
            # keep their counts and sums but no latency percentiles of their own.
            sketched = len(self.report.groups) < SKETCHED_GROUPS
            g = GroupStats(key) if sketched else GroupStats(key, latency=None)
            self.report.groups[key] = g
        return g

    def feed(self, lines: Iterable[bytes], name: str) -> None:
        report = self.report
        report.files.append(name)
        loads = orjson.loads
        counted = _COUNTED
        handle = self._event
        n_lines = n_events = 0
        try:
            for n_lines, line in enumerate(lines, 1):
                if len(line) < 3 and not line.strip():
                    continue
                try:
                    rec = loads(line)
                    event = rec["event"]
                    ts = rec["timestamp"]
                    if rec["v"] != 1 or type(ts) is not float or not _MIN_TS <= ts <= _MAX_TS:
                        self._check(rec)
                    if event in counted:
                        handle(event, rec)
                except orjson.JSONDecodeError as exc:
                    self._broken(name, n_lines, f"not valid JSON: {exc}")
                    continue
                except (KeyError, TypeError, AttributeError) as exc:
                    self._broken(name, n_lines, f"not a hookwire log line (missing or bad {exc})")
                    continue
                except (LogFormatError, ValueError, InvalidOperation) as exc:
                    self._broken(name, n_lines, str(exc))
                    continue
                n_events += 1
        finally:
            report.lines += n_lines
            report.events += n_events

    @staticmethod
    def _check(rec: dict[str, Any]) -> None:
        """The slow path of the schema checks, for lines that are not plainly version 1."""
        v = rec["v"]
        if type(v) is not int or v < 1 or v > SCHEMA_VERSION:
            hint = "; upgrade hookwire" if type(v) is int and v > SCHEMA_VERSION else ""
            raise LogFormatError(
                f"schema version {v!r} is not one this hookwire reads (1..{SCHEMA_VERSION}){hint}"
            )
        ts = rec["timestamp"]
        if type(ts) not in (int, float):
            raise LogFormatError(f'"timestamp" must be a number, not {ts!r}')
        if not _MIN_TS <= ts <= _MAX_TS:
            raise LogFormatError(
                f'"timestamp" {ts!r} is not a time from year 1 to 9999 (seconds since 1970)'
            )

    def _event(self, event: str, rec: dict[str, Any]) -> None:
        if event == "llm_end":
            # Every figure is read and checked before any is added: a bad line adds nothing.
            resp = rec["data"].get("response") or {}
            usage = resp.get("usage") or {}
            # The usual line (integer counts, a float latency) is checked inline: a function
            # call per figure costs a tenth of the report's speed.
            prompt = usage.get("prompt_tokens", 0)
            completion = usage.get("completion_tokens", 0)
            total = usage.get("total_tokens", 0)
            if not (
                type(prompt) is int
                and type(completion) is int
                and type(total) is int
                and 0 <= prompt <= _MAX_TOKENS
                and 0 <= completion <= _MAX_TOKENS
                and 0 <= total <= _MAX_TOKENS
            ):
                prompt = _tokens(usage, "prompt_tokens")
                completion = _tokens(usage, "completion_tokens")
                total = _tokens(usage, "total_tokens")
            cost = _cost(resp.get("cost"))
            latency = rec.get("latency_ms")
            if latency is not None and (
                type(latency) is not float or not 0.0 <= latency <= MAX_LATENCY_MS
            ):
                latency = _latency(latency)
            key = self._key(rec)
            self.in_flight.pop(rec.get("run_id", ""), None)
            g = self._group(key)
            g.calls += 1
            g.prompt_tokens += prompt
            g.completion_tokens += completion
            g.total_tokens += total
            if cost is not None:
                g.cost += cost
                g.priced_calls += 1
            if latency is not None:
                (g.latency if g.latency is not None else self.report.overflow).add(latency)
        elif event == "llm_error":
            key = self._key(rec)
            self.in_flight.pop(rec.get("run_id", ""), None)
            g = self._group(key)
            g.calls += 1
            g.errors += 1
        elif event == "retry":
            self._group(self._key(rec)).retries += 1
        elif event == "llm_start" and self.by == "model":
            run_id = rec.get("run_id")
            model = rec.get("model")
            if run_id is not None and model is not None:
                self.in_flight[run_id] = str(model)
                if len(self.in_flight) > _MAX_IN_FLIGHT:
                    self.in_flight.popitem(last=False)


def _tokens(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name, 0)
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        n = -1
    if not 0 <= n <= _MAX_TOKENS or (isinstance(value, float) and not value.is_integer()):
        raise LogFormatError(f'"{name}" must be a whole number of tokens, not {value!r}')
    return n


def _cost(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        cost = Decimal(str(value)) if not isinstance(value, bool) else Decimal("NaN")
    except InvalidOperation:
        cost = Decimal("NaN")
    if not cost.is_finite() or not 0 <= cost <= MAX_LINE_COST:
        raise LogFormatError(f'"cost" must be an amount from 0 to {MAX_LINE_COST}, not {value!r}')
    return cost


def _latency(value: Any) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 <= value <= MAX_LATENCY_MS:
        raise LogFormatError(
            f'"latency_ms" must be a number of milliseconds from 0 to {MAX_LATENCY_MS:.0f}, '
            f"not {value!r}"
        )
    return float(value)


def summarize(
    paths: Iterable[str | Path],
    *,
    by: GroupBy = "model",
    rotated: bool = False,
    stdin: IO[bytes] | None = None,
) -> Report:
    """Read the logs at ``paths`` (``"-"`` is stdin) and return a ``Report``.

    ``rotated=True`` also reads each log's rotated backups (``LOG.1``, ``LOG.2``, ...).
    Files that cannot be opened raise ``ConfigurationError`` naming them.
    """
    s = _Summarizer(by)
    names: list[str] = []
    seen: set[str] = set()
    for p in paths:
        for name in _with_rotated(str(p)) if rotated else [str(p)]:
            key = name if name == "-" else str(Path(name).resolve())
            if key not in seen:
                seen.add(key)
                names.append(name)
    for name in names:
        if name == "-" and stdin is not None:
            s.feed(stdin, "<stdin>")
            continue
        try:
            f = _open(name)
        except OSError as exc:
            raise ConfigurationError(f"cannot read log {name}: {exc.strerror or exc}") from exc
        try:
            s.feed(_lines(f), "<stdin>" if name == "-" else name)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            s._broken(name, 0, f"reading stopped: {exc}")
        finally:
            if name != "-":
                f.close()
    return s.report


def _lines(f: IO[bytes]) -> Iterator[bytes]:
    yield from f


# -- output -----------------------------------------------------------------------------------


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_cost(g: GroupStats) -> str:
    from .callbacks.console import format_cost

    unpriced = g.calls - g.errors - g.priced_calls
    text = format_cost(g.total_cost)
    if g.priced_calls and unpriced > 0:
        text += " +?"
    return text


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def render(report: Report, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
    """Print the report as a table (and broken lines to ``err``)."""
    from rich.console import Console
    from rich.table import Table

    file = out or sys.stdout
    # Off a terminal rich would squeeze the table into 80 columns; give it room instead.
    width = None if getattr(file, "isatty", lambda: False)() else 200
    console = Console(file=file, highlight=False, markup=False, emoji=False, width=width)
    table = Table(title=f"hookwire report by {report.by}", title_justify="left")
    table.add_column(report.by)
    for col in ("calls", "prompt tok", "compl. tok", "total tok", "cost", "errors", "retries"):
        table.add_column(col, justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")

    def row(g: GroupStats) -> list[str]:
        return [
            visible(g.key),
            _fmt_int(g.calls),
            _fmt_int(g.prompt_tokens),
            _fmt_int(g.completion_tokens),
            _fmt_int(g.total_tokens),
            _fmt_cost(g),
            _fmt_int(g.errors),
            _fmt_int(g.retries),
            _fmt_ms(g.quantile(0.5)),
            _fmt_ms(g.quantile(0.95)),
        ]

    for g in sorted(report.groups.values(), key=lambda g: g.key):
        table.add_row(*row(g))
    if len(report.groups) > 1:
        table.add_section()
        table.add_row(*row(report.total))
    console.print(table)
    skipped = " (skipped, not counted: see below)" if report.broken else ""
    console.print(
        f"{_fmt_int(report.lines)} lines, {_fmt_int(report.events)} events, "
        f"{_fmt_int(report.broken)} broken{skipped}, from {len(report.files)} file(s)"
    )
    _print_broken(report, err or sys.stderr)


def render_json(report: Report, out: IO[str] | None = None, err: IO[str] | None = None) -> None:
    """Print the report as JSON (``Report.to_dict``) and broken lines to ``err``."""
    file = out or sys.stdout
    file.write(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
    file.write("\n")
    _print_broken(report, err or sys.stderr)


def _print_broken(report: Report, err: IO[str]) -> None:
    # One plain line each (no wrapping), so editors and grep can jump to file:line.
    for b in report.broken_lines:
        err.write(f"broken line {visible(b.file)}:{b.line}: {visible(b.error)}\n")
    more = report.broken - len(report.broken_lines)
    if more > 0:
        err.write(f"... and {more} more broken line(s)\n")
