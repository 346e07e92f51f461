"""``OutboxCallback``: every event written to the outbox in the store, for a relay to deliver.

The app thread only queues the event's parts on a bounded ``hookwire._workers.BackgroundQueue``
(an event holding a container the app may change later, a tool's input dict say, is first
turned into its JSON record there, so it is written as it was emitted); the
``hookwire-outbox`` worker builds each record (``hookwire.logschema``, as ``FileLogCallback``
writes it), gives it a UUIDv7 id and an ordering key (the conversation, else the trace, else
the run), redacts secrets over the whole batch at once and inserts it in one transaction, one
row per event and sink (``hookwire.stores.outbox``). Events of one handler reach the outbox in
the order they were emitted, which is the order a relay delivers each key in.

If the outbox cannot be written (the database down, the disk full), a batch is retried with
a backoff for ``retry_for`` seconds, then dropped and counted (``dropped``, and so
``CallbackManager.stats()``), with a warning logged once per outage. While writes fail, an
event that finds the queue full is dropped at once; otherwise it waits at most ``put_wait``
seconds for room: the app never waits longer than that for the outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._logonce import LogOnce
from .._workers import BackgroundQueue, past_exit_deadline
from ..callbacks.base import BaseCallback
from ..callbacks.forwarding import forward_hooks
from ..errors import ConfigurationError
from ..events import HOOKS
from ..ids import id_at
from ..logschema import EVENT_NAMES, IMMUTABLE_TYPES, Redactor, dumps_record, line_from_parts
from ..masking import Mask, masked_redactor
from ..sampling import sample
from ..stores import runner
from ..stores.outbox import Outbox, OutboxEvent

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..callbacks.forwarding import RawParts

__all__ = ["OutboxCallback", "sink_names"]

logger = logging.getLogger("hookwire")

_UTC = timezone.utc
#: Events written per transaction at most.
BATCH: Final = 1000
#: Seconds one write may take before it is given up and retried (rows are idempotent by
#: event id and sink, so a write that did commit is not doubled).
WRITE_TIMEOUT: Final = 30.0

#: What the app thread queues: the event's parts, ``(hook, args, run_id, timestamp, ctx, kw,
#: model, provider)``, or when they hold containers the app may change, ``(hook, key,
#: timestamp, JSON)``.
_Item = tuple[Any, ...]
#: Whether every value's type is one whose values cannot change once emitted (FileLog's rule).
_fixed: Final = IMMUTABLE_TYPES.issuperset


def sink_names(sinks: Iterable[Any]) -> list[str]:
    """The names of ``sinks``: names as given, sinks by their ``name`` attribute."""
    names = [s if isinstance(s, str) else getattr(s, "name", None) for s in sinks]
    bad = [n for n in names if not isinstance(n, str) or not n or len(n) > 64]
    if bad or not names:
        raise ConfigurationError(
            "sinks must be a non-empty list of sink names (1 to 64 characters) or sinks with "
            f"a name (WebhookSink(url, name=...)), not {list(sinks)!r}"
        )
    if len(set(names)) != len(names):
        raise ConfigurationError(f"two sinks share a name in {names}; give each its own name=")
    return [str(n) for n in names]


class OutboxCallback(BaseCallback):
    """Writes every event to the outbox of the database ``url`` (SQLite ``./hookwire.db`` by
    default, PostgreSQL by URL), once for each of ``sinks`` (their names, or the sinks
    themselves), for a ``hookwire.export.Relay`` to deliver at least once.

    Filters: ``hooks`` (hook names; default every hook but streamed tokens, which
    ``include_tokens=True`` adds), ``users`` and ``agents`` (only events of those),
    ``include_prompts`` / ``include_responses`` (content left out as ``FileLogCallback``
    does). For filters that differ per sink, use one handler per sink. ``redact`` adds your
    own patterns or a function ``(str) -> str`` to the built-in redaction of secrets, and
    ``mask`` masks every text value before the event leaves the process (``hookwire.masking``:
    a function ``(str) -> str``, ``True`` for ``mask_pii``; by default the process-wide one).

    ``sample_rate`` keeps that fraction of traces, whole (``hookwire.sampling``: decided from
    the trace id, alike in every process; 0.0 keeps none; ``None``, the default, keeps all);
    a trace with an error (errors, retries, budget refusals) or with a ``latency_ms`` or
    ``cost`` reaching ``keep_over_ms`` / ``keep_over_cost`` is kept whole all the same.

    ``queue_size`` bounds the events waiting for the database; see the module for what
    happens when it cannot be written. ``pending`` and ``dropped`` show in
    ``CallbackManager.stats()``.
    """

    name = "OutboxCallback"

    def __init__(
        self,
        sinks: Sequence[Any] = ("default",),
        url: str | None = None,
        *,
        store: Outbox | None = None,
        hooks: Collection[str] | None = None,
        users: Collection[str] | None = None,
        agents: Collection[str] | None = None,
        include_prompts: bool = True,
        include_responses: bool = True,
        include_tokens: bool = False,
        redact: Iterable[Any] | Callable[[str], str] | None = None,
        mask: Mask = None,
        sample_rate: float | None = None,
        keep_over_ms: float | None = None,
        keep_over_cost: Decimal | float | None = None,
        queue_size: int = 100_000,
        put_wait: float = 1.0,
        retry_for: float = 30.0,
    ) -> None:
        if not isinstance(queue_size, int) or queue_size <= 0:
            raise ConfigurationError(
                f"queue_size must be a positive number of events, not {queue_size!r}"
            )
        self.sinks = sink_names(sinks)
        self.store = store if store is not None else Outbox.for_url(url)
        self.include_prompts = include_prompts
        self.include_responses = include_responses
        self.users = frozenset(users) if users is not None else None
        self.agents = frozenset(agents) if agents is not None else None
        self.put_wait = put_wait
        self.retry_for = retry_for
        #: Whether the last write failed (its batch is being retried).
        self.failing = False
        self._lost = 0
        self._redactor = masked_redactor(redact, mask)
        self._lost_log = LogOnce()
        self._queue: BackgroundQueue[_Item] = BackgroundQueue(
            f"OutboxCallback({self.store!r})",
            self._write,
            maxsize=queue_size,
            linger=0.005,
            max_batch=BATCH,
            worker="hookwire-outbox",
        )
        self._filtering = users is not None or agents is not None
        self._offer = self._queue.offer
        wanted = self._wanted(hooks, include_tokens)
        self.ignore_hooks(*(h for h in HOOKS if h not in wanted))
        self.sampler = sample(
            self, sample_rate, keep_over_ms=keep_over_ms, keep_over_cost=keep_over_cost
        )

    @staticmethod
    def _wanted(hooks: Collection[str] | None, include_tokens: bool) -> set[str]:
        if hooks is None:
            return {h for h, spec in HOOKS.items() if include_tokens or not spec.streamed}
        unknown = [h for h in hooks if h not in HOOKS]
        if unknown:
            raise ConfigurationError(
                f"hooks {unknown} are not hooks; the hooks are {', '.join(HOOKS)}"
            )
        return set(hooks)

    def __repr__(self) -> str:
        return f"OutboxCallback({self.sinks!r}, {self.store!r})"

    @property
    def pending(self) -> int:
        """Events queued and not yet in the outbox."""
        return self._queue.pending

    @property
    def dropped(self) -> int:
        """Events lost: the queue was full during an outage, or the outbox refused them for
        longer than ``retry_for``."""
        return self._queue.dropped + self._lost

    # -- the app thread's side: one append per event ----------------------------------------

    def _hookwire_raw(self, *parts: Unpack[RawParts]) -> None:
        """Queue one event from what ``CallbackManager`` has at hand (see
        ``FileLogCallback._hookwire_raw``); ``ctx`` and ``kw`` are only read."""
        hook, args, run_id, timestamp, ctx, kw, model, provider = parts
        if self._filtering and not self._kept(ctx, kw):
            return
        if run_id is None:  # called directly: the keywords are the whole record
            ts = kw.get("timestamp")
            if not isinstance(ts, (int, float)):
                ts = time.time()
        else:
            ts = timestamp if timestamp is not None else time.time()
        stamped: RawParts = (hook, args, run_id, ts, ctx, kw, model, provider)
        if not _fixed(map(type, args)) or (kw and not _fixed(map(type, kw.values()))):
            return self._offer_line(stamped)
        # Only values that cannot change are queued as they are: the worker builds the record
        # (its key, JSON, id) from them, as it would have been built here.
        self._offer(stamped, 0.0 if self.failing else self.put_wait)

    def _offer_line(self, parts: RawParts) -> None:
        # A container (a list of messages, a tool's input) may be changed by the app once the
        # hook returns: the event is serialised now, as it was when emitted.
        hook, _, run_id, ts, ctx, kw, _, _ = parts
        key = _key(run_id, ctx, kw)
        line = line_from_parts(*parts, self.include_prompts, self.include_responses)
        self._offer((hook, key, ts, line), 0.0 if self.failing else self.put_wait)

    def _kept(self, ctx: Mapping[str, Any], kw: Mapping[str, Any]) -> bool:
        if self.users is not None and (kw.get("user_id") or ctx.get("user_id")) not in self.users:
            return False
        return self.agents is None or (kw.get("agent") or ctx.get("agent")) in self.agents

    # -- draining ---------------------------------------------------------------------------

    def flush(self, timeout: float | None = 10.0) -> bool:  # type: ignore[override]
        """Wait until every event queued before this call is in the outbox (or dropped);
        ``False`` on timeout."""
        return self._queue.flush(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush, and leave the exit hook until the next event."""
        self._queue.close(timeout)

    # -- on the outbox worker -----------------------------------------------------------------

    def _write(self, batch: list[_Item]) -> None:
        events = self._events(batch)
        if not events:
            return
        delay, deadline = 0.05, time.monotonic() + self.retry_for
        while True:
            try:
                runner.run_sync(self.store.enqueue(events, self.sinks), WRITE_TIMEOUT)
            except Exception as exc:
                self.failing = True
                if time.monotonic() >= deadline or past_exit_deadline():
                    self._lost += len(batch)
                    self._lost_log(
                        "hookwire: the outbox %s cannot be written (%s); events are dropped "
                        "and counted in CallbackManager.stats() until it can (further losses "
                        "are logged at debug level)",
                        self.store,
                        exc,
                    )
                    return
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            break
        if self.failing:
            logger.warning("hookwire: the outbox %s takes events again", self.store)
            self._lost_log.reset()
        self.failing = False

    def _events(self, batch: list[_Item]) -> list[OutboxEvent]:
        """The batch's outbox rows: each event's key, record and id, then one redaction pass
        over all the records (the scan for secrets costs per call, not per byte)."""
        heads: list[tuple[str, str, float]] = []
        lines: list[bytes] = []
        include_prompts, include_responses = self.include_prompts, self.include_responses
        for item in batch:
            if len(item) == 4:
                hook, key, ts, line = item
            else:
                hook, args, run_id, ts, ctx, kw, model, provider = item
                key = _key(run_id, ctx, kw)
                try:
                    line = line_from_parts(
                        hook,
                        args,
                        run_id,
                        ts,
                        ctx,
                        kw,
                        model,
                        provider,
                        include_prompts,
                        include_responses,
                    )
                except Exception as exc:
                    self._lost += 1
                    self._lost_log("hookwire: an event (%s) could not be serialised: %r", hook, exc)
                    continue
            heads.append(
                (hook, key if type(key) is str and len(key) <= 255 else str(key)[:255], ts)
            )
            lines.append(line)
        if not lines:
            return []
        bodies = _bodies(self._redactor, lines)
        # The ids are given here, once: a batch retried keeps them.
        return [
            OutboxEvent(id_at(ts), key, EVENT_NAMES[hook], datetime.fromtimestamp(ts, _UTC), body)
            for (hook, key, ts), body in zip(heads, bodies, strict=True)
        ]


def _bodies(red: Redactor, lines: list[bytes]) -> list[bytes]:
    # Secrets out before the events leave the process (as ``hookwire.logschema.to_line``).
    # JSON lines hold no raw newline, so the batch is redacted as one text and cut again.
    if red.walks_values:
        lines = [dumps_record(red.walk(orjson.loads(line))) for line in lines]
    return red.json_bytes(b"".join(lines)).split(b"\n")[:-1]


def _key(run_id: Any, ctx: Mapping[str, Any], kw: Mapping[str, Any]) -> Any:
    """The ordering key: the conversation, else the trace, else the run."""
    return (
        kw.get("conversation_id")
        or ctx.get("conversation_id")
        or kw.get("trace_id")
        or ctx.get("trace_id")
        or (kw.get("run_id") if run_id is None else run_id)
        or ""
    )


forward_hooks(OutboxCallback, lambda spec: f"Write ``{spec.name}`` to the outbox.")
