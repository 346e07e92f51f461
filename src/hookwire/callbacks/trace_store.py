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
A batch the database refuses is logged once and counted in ``failed``; the app never waits
for it beyond the queue's bound (``drop_when_full`` drops and counts instead).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import orjson

from .._logonce import LogOnce
from .._workers import BackgroundQueue
from ..events import HOOKS
from ..logschema import Redactor, line_from_parts
from ..masking import Mask, masked_redactor
from ..sampling import sample
from ..stores import runner
from ..stores.traces import TraceStore, spans_from_records
from .base import BaseCallback
from .forwarding import forward_hooks

__all__ = ["TraceStoreCallback", "TraceWriter", "trace_writer"]

logger = logging.getLogger("hookwire")

_BATCH: Final = 2000
#: Seconds one batch's write may take before it is given up (and counted as failed).
WRITE_TIMEOUT: Final = 60.0

Item = tuple[Redactor, bytes]


class TraceWriter:
    """The queue of one trace store, shared by every handler writing to it."""

    def __init__(self, store: TraceStore, queue_size: int, drop_when_full: bool) -> None:
        self.store = store
        #: Spans that could not be written (their batch failed; logged once).
        self.failed = 0
        self._log = LogOnce()
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

    def _write(self, batch: list[Item]) -> None:
        records = []
        for redactor, line in batch:
            try:
                record = orjson.loads(redactor.json_bytes(line))
                # The user's rules and mask on top of the built-in ones, never instead.
                records.append(redactor.walk(record) if redactor.walks_values else record)
            except Exception as exc:  # a user's redact function failed: drop, never leak
                self._log("hookwire: a span could not be redacted and was dropped: %r", exc)
        patches = spans_from_records(records)
        try:
            runner.run_sync(self.store.record(patches), WRITE_TIMEOUT)
        except Exception as exc:
            self.failed += len(patches)
            self._log(
                "hookwire: %s could not record %d span(s); they are lost (further failures "
                "are logged at debug level): %r",
                self.store,
                len(patches),
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
        self._put = self._writer.queue.put
        self.ignore_hooks(*(hook for hook, spec in HOOKS.items() if spec.streamed))
        self.sampler = sample(
            self, sample_rate, keep_over_ms=keep_over_ms, keep_over_cost=keep_over_cost
        )

    def __repr__(self) -> str:
        return f"TraceStoreCallback({self.store!r})"

    @property
    def dropped(self) -> int:
        """Events dropped because the queue was full (only with ``drop_when_full=True``)."""
        return self._writer.queue.dropped

    @property
    def failed(self) -> int:
        """Spans whose write failed (logged once)."""
        return self._writer.failed + self._writer.queue.failed

    def _hookwire_raw(
        self,
        hook: str,
        args: tuple[Any, ...],
        run_id: Any,
        timestamp: Any,
        ctx: Mapping[str, Any],
        kw: dict[str, Any],
        model: Any,
        provider: Any,
    ) -> None:
        """Queue one event: what ``CallbackManager`` has at hand (as ``FileLogCallback``)."""
        try:
            line = line_from_parts(
                hook,
                args,
                run_id,
                timestamp,
                ctx,
                kw,
                model,
                provider,
                self.include_prompts,
                self.include_responses,
            )
        except Exception as exc:
            logger.debug("hookwire: an event (%s) could not be serialised: %r", hook, exc)
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
