"""``TraceStoreCallback``: every run, LLM call, tool call, memory operation, retry and error as
spans in the trace store, written off the app thread.

The app thread does what ``FileLogCallback`` does, and nothing more: it turns the event into
its log line (``hookwire.logschema``, orjson; the content switches applied there) and puts
the bytes on a ``hookwire._workers.BackgroundQueue``. The queue is shared by every handler of
one store (handlers are often made per request; rows written many per transaction are what
makes the store fast), on a worker of its own name (``hookwire-traces``), so that a slow
database never holds up log files or the ledger. There the lines are redacted (the same
``hookwire.redaction.Redactor`` as FileLog: secrets never reach the database), folded into
span patches (``hookwire.stores.traces.spans``) and recorded in one transaction per batch.

A database that cannot take the batch now (down, unreachable, locked, full: the ledger's
``failure_kind``) is retried with a backoff (up to :data:`MAX_BACKOFF` seconds between
tries), the batch kept and the queue behind it held, in order; the outage is logged once, and
its end. Meanwhile the queue keeps at most ``queue_size`` events: beyond that an event is
dropped and counted at once (the app never waits for an outage); while the database takes
spans, an event waits at most :data:`PUT_WAIT` for room (none with ``drop_when_full``).
A batch the database refuses itself is written span by span, so that only a refused span is
lost (counted, logged once). Lost events and spans are counted in
the handler's ``dropped`` (``CallbackManager.stats()["dropped"]``). A batch whose write
committed but whose answer was lost is written again: its spans come out the same, except
that a retried call counts its retries twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import orjson

from .._logonce import LogOnce
from .._workers import BackgroundQueue, past_exit_deadline
from ..events import HOOKS
from ..logschema import Redactor, line_from_parts
from ..masking import Mask, masked_redactor
from ..sampling import sample
from ..stores import runner
from ..stores.traces import TraceStore, spans_from_records
from .accounting.ledger_queue import Failure, failure_kind
from .base import BaseCallback
from .forwarding import forward_hooks

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .forwarding import RawParts

__all__ = ["TraceStoreCallback", "TraceWriter", "trace_writer"]

logger = logging.getLogger("hookwire")

_BATCH: Final = 2000
#: Seconds one batch's write may take before it is given up (and tried again).
WRITE_TIMEOUT: Final = 60.0
#: The longest wait between two tries of a batch the database could not take.
MAX_BACKOFF: Final = 5.0
#: Seconds an event waits for room in a full queue while the database takes spans (then it
#: is dropped and counted); while writes fail, or one has run longer than this, an event that
#: finds the queue full is dropped at once (as the ledger's rows are).
PUT_WAIT: Final = 1.0

Item = tuple[Redactor, bytes]


class TraceWriter:
    """The queue of one trace store, shared by every handler writing to it."""

    def __init__(self, store: TraceStore, queue_size: int, drop_when_full: bool) -> None:
        self.store = store
        #: Spans lost: refused by the database, or given up at exit (logged once).
        self.failed = 0
        #: Whether the last write failed (its batch is kept and retried).
        self.failing = False
        self._drop_when_full = drop_when_full
        self._writing_since: float | None = None
        self._log = LogOnce()
        self._full_log = LogOnce()
        self._stop = threading.Event()
        self.queue: BackgroundQueue[Item] = BackgroundQueue(
            f"traces {store!r}",
            self._write,
            maxsize=queue_size,
            drop_when_full=drop_when_full,
            linger=0.02,
            max_batch=_BATCH,
            worker="hookwire-traces",
        )
        # Opened now, not at the first write: at exit (Python 3.12+) no thread can be started
        # for aiosqlite's connection (as the ledger's queue does).
        asyncio.run_coroutine_threadsafe(store.open(), runner.get_loop())

    def put(self, item: Item) -> None:
        """Queue one event (see the module for what a full queue does)."""
        if not self.queue.offer(item, 0.0 if self._stalled() else PUT_WAIT):
            self._full_log(
                "hookwire: %s is not taking spans and its queue is full (%d events); events "
                "are dropped and counted until it takes them again",
                self.store,
                self.queue.pending,
            )

    def _stalled(self) -> bool:
        since = self._writing_since
        return (
            self._drop_when_full
            or self.failing
            or (since is not None and time.monotonic() - since > PUT_WAIT)
        )

    @property
    def dropped(self) -> int:
        """Events and spans lost: the queue was full, the database refused them, or the
        process exited during an outage."""
        return self.queue.dropped + self.queue.failed + self.failed

    def give_up(self, timeout: float) -> None:
        """Stop retrying for up to ``timeout`` seconds: what is queued now and cannot be
        written is dropped (logged); what is queued later is retried again."""
        self._stop.set()
        try:
            self.queue.flush(timeout)
        finally:
            self._stop.clear()

    def _write(self, batch: list[Item]) -> None:
        records = []
        for redactor, line in batch:
            try:
                record = orjson.loads(redactor.json_bytes(line))
                # The user's rules and mask on top of the built-in ones, never instead.
                records.append(redactor.walk(record) if redactor.walks_values else record)
            except Exception as exc:  # a user's redact function failed: drop, never leak
                self.failed += 1
                self._log("hookwire: a span could not be redacted and was dropped: %r", exc)
        patches = spans_from_records(records)
        self._writing_since = time.monotonic()
        try:
            self._record(patches)
        finally:
            self._writing_since = None
        if self.failing:
            self.failing = False
            self._full_log.reset()
            logger.warning("hookwire: %s records spans again", self.store)

    def _record(self, patches: list[dict[str, Any]]) -> None:
        """Record ``patches``, retrying with a backoff while the database cannot take them."""
        delay = 0.05
        while patches:
            try:
                runner.run_sync(self.store.record(patches), WRITE_TIMEOUT)
                break
            except Exception as exc:
                if failure_kind(exc) is not Failure.UNAVAILABLE:
                    patches = self._one_by_one(patches)
                    if not patches:
                        break
                    exc = self._last
                if self._stop.is_set() or past_exit_deadline():
                    self._lose(len(patches), exc)
                    break
                self._outage(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    _last: Exception

    def _one_by_one(self, patches: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write ``patches`` a span at a time, dropping those the database refuses; the ones
        left when it looks unavailable are returned (to retry), with the error in ``_last``."""
        for i, patch in enumerate(patches):
            try:
                runner.run_sync(self.store.record([patch]), WRITE_TIMEOUT)
            except Exception as exc:
                if failure_kind(exc) is Failure.UNAVAILABLE:
                    self._last = exc
                    return patches[i:]
                self.failed += 1
                self._log(
                    "hookwire: %s refuses a span (%s); it was dropped and counted, the spans "
                    "behind it are written (further refusals are logged at debug level): %r",
                    self.store,
                    exc,
                    patch.get("span_id"),
                )
        return []

    def _outage(self, exc: Exception) -> None:
        if not self.failing:
            self.failing = True
            logger.error(
                "hookwire: %s could not record spans; retrying with a backoff, keeping at most "
                "%d events queued (further failures are logged at debug level): %r",
                self.store,
                self.queue.pending,
                exc,
            )
        else:
            logger.debug("hookwire: recording spans in %s failed again: %r", self.store, exc)

    def _lose(self, n: int, exc: Exception) -> None:
        self.failed += n
        logger.error(
            "hookwire: %s took no spans until the handler was closed (or the process's exit "
            "ran out of time); %d span(s) lost: %r",
            self.store,
            n,
            exc,
        )


_WRITERS: dict[int, TraceWriter] = {}
_WRITERS_LOCK = threading.Lock()


def trace_writer(
    store: TraceStore, queue_size: int = 100_000, drop_when_full: bool = False
) -> TraceWriter:
    """The writer of ``store``, shared by every handler that writes to it (the first
    handler's queue settings make it)."""
    with _WRITERS_LOCK:
        writer = _WRITERS.get(id(store))
        if writer is None or writer.store is not store:
            writer = _WRITERS[id(store)] = TraceWriter(store, queue_size, drop_when_full)
        return writer


class TraceStoreCallback(BaseCallback):
    """Records every event as spans in the trace store that ``hookwire ui`` shows.

    ``database_url``: the database (as for ``hookwire.stores.engine.resolve_url``: SQLite
    ``./hookwire.db`` by default, PostgreSQL by URL), the same as the history's and the
    ledger's; or ``store=`` any ``TraceStore``. ``include_prompts`` / ``include_responses``
    and ``redact`` are FileLog's: prompts, tool inputs and memory contents (answers, tool
    outputs and memory results) are left out when off; secrets are always redacted, with your
    own patterns or function added by ``redact``, and personal data masked by ``mask``
    (``hookwire.masking``: a function, or ``True`` for ``mask_pii``; by default the
    process-wide one).

    ``sample_rate`` records that fraction of traces, whole (``hookwire.sampling``; ``None``,
    the default, records all); a trace with an error, a retry, a budget refusal or a call
    over ``keep_over_ms`` / ``keep_over_cost`` is recorded whole all the same.

    ``flush()`` waits until the spans queued are written.
    """

    name = "TraceStoreCallback"

    def __init__(
        self,
        database_url: str | None = None,
        *,
        store: TraceStore | None = None,
        include_prompts: bool = True,
        include_responses: bool = True,
        redact: Iterable[Any] | Callable[[str], str] | None = None,
        mask: Mask = None,
        sample_rate: float | None = None,
        keep_over_ms: float | None = None,
        keep_over_cost: Decimal | float | None = None,
        queue_size: int = 100_000,
        drop_when_full: bool = False,
    ) -> None:
        self.store = store if store is not None else TraceStore.for_url(database_url)
        self.include_prompts = include_prompts
        self.include_responses = include_responses
        self._redactor = masked_redactor(redact, mask)
        self._writer = trace_writer(self.store, queue_size, drop_when_full)
        self._put = self._writer.put
        self.ignore_hooks(*(hook for hook, spec in HOOKS.items() if spec.streamed))
        self.sampler = sample(
            self, sample_rate, keep_over_ms=keep_over_ms, keep_over_cost=keep_over_cost
        )

    def __repr__(self) -> str:
        return f"TraceStoreCallback({self.store!r})"

    @property
    def dropped(self) -> int:
        """Events and spans lost (``CallbackManager.stats()["dropped"]``): the queue was full
        (during an outage, or with ``drop_when_full=True``), the database refused them, or
        the process exited while it took none (each logged once)."""
        return self._writer.dropped

    @property
    def pending(self) -> int:
        """Events queued and not yet written (``CallbackManager.stats()["queued"]``)."""
        return self._writer.queue.pending

    @property
    def failed(self) -> int:
        """Spans whose write failed: refused by the database, or given up at exit."""
        return self._writer.failed + self._writer.queue.failed

    @property
    def failing(self) -> bool:
        """Whether the database is taking no spans now (they are kept and retried)."""
        return self._writer.failing

    def give_up(self, timeout: float = 10.0) -> None:
        """Stop retrying for up to ``timeout`` seconds: the events queued now that cannot be
        written are dropped and counted (for a store that will not come back)."""
        self._writer.give_up(timeout)

    def _hookwire_raw(self, *parts: Unpack[RawParts]) -> None:
        """Queue one event: what ``CallbackManager`` has at hand (as ``FileLogCallback``)."""
        try:
            line = line_from_parts(*parts, self.include_prompts, self.include_responses)
        except Exception as exc:
            logger.debug("hookwire: an event (%s) could not be serialised: %r", parts[0], exc)
            return
        self._put((self._redactor, line))

    def flush(self, timeout: float | None = 10.0) -> bool:  # type: ignore[override]
        """Wait (up to ``timeout`` seconds) until every span queued before is written."""
        return self._writer.queue.flush(timeout)

    def close(self) -> None:
        """Flush (the shared queue stays, for the store's other handlers)."""
        self.flush()


forward_hooks(
    TraceStoreCallback, lambda spec: f"Record ``{spec.name}`` as (part of) a span.", stamp=True
)
