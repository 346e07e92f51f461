"""``Relay``: delivers the outbox's rows to sinks, at least once, in order per key.

A round, for each sink: claim up to ``batch_size`` due rows (``Outbox.take``: rows other
relays hold are skipped on PostgreSQL, and rows that would overtake an earlier pending row of
their key are left), ``send`` them, and mark them delivered, failed or dead. Run as many
relays as you like, in any processes, on one PostgreSQL outbox; each row is held by one relay
at a time (its lease, ``lease`` seconds at most: a relay that dies mid-delivery gives its
rows back, on PostgreSQL at once, on SQLite when the lease runs out, and they are delivered
again: at least once).

A failed batch is retried after an exponential backoff with jitter (tenacity's ``wait``
strategies, computed from the attempts the outbox counted, so the schedule survives
restarts), never sooner than the receiver's ``Retry-After``; rows failing for ``dead_after``
seconds are marked dead, as are rows the receiver refuses (``DeliveryRefused``). A key whose
row is waiting for its retry holds back its later rows only.

The relay is not a background worker of the app: run it in a process of its own (``Relay(...)
.run()``, or ``hookwire events relay``), or next to the app with :meth:`Relay.start`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import tenacity

from .._logonce import LogOnce
from ..errors import ConfigurationError, DeliveryRefused
from ..ids import new_id
from ..stores import runner
from ..stores.outbox import Claim, Delivery, Outbox
from .sinks import Sink

__all__ = ["Relay"]

logger = logging.getLogger("hookwire")

_UTC = timezone.utc
#: Seconds a store operation of the relay may take.
STORE_TIMEOUT = 60.0


class Relay:
    """Delivers the outbox of ``url`` (or ``store``) to ``sinks`` (see the module).

    ``batch_size``: rows per claim (sent in slices of the sink's ``max_batch``, if it has
    one; a claim is a few statements whatever its size, so bigger claims cost less per
    event); ``lease``: seconds a claim holds its
    rows (longer than a ``send`` may take); ``backoff`` / ``max_backoff``: the first and the
    longest wait between attempts (seconds); ``dead_after``: seconds a row may keep failing
    before it is marked dead; ``poll``: seconds :meth:`run` sleeps when nothing is due.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        url: str | None = None,
        *,
        store: Outbox | None = None,
        batch_size: int = 1000,
        lease: float = 60.0,
        backoff: float = 0.5,
        max_backoff: float = 300.0,
        dead_after: float = 3600.0,
        poll: float = 0.2,
        relay_id: str | None = None,
    ) -> None:
        if not sinks:
            raise ConfigurationError("a relay needs at least one sink")
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"two sinks share a name in {names}; give each its own name=")
        if batch_size <= 0 or lease <= 0 or dead_after <= 0:
            raise ConfigurationError("batch_size, lease and dead_after must be positive")
        self.sinks = list(sinks)
        self.store = store if store is not None else Outbox.for_url(url)
        self.batch_size = batch_size
        self.lease = lease
        self.dead_after = dead_after
        self.poll = poll
        self.relay_id = relay_id or f"{os.getpid()}-{new_id()[-12:]}"
        self._wait: Any = tenacity.wait_exponential(
            multiplier=backoff, max=max_backoff
        ) + tenacity.wait_random(0, backoff)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure_log = LogOnce()
        #: Rows delivered, retried and marked dead by this relay.
        self.counts = {"delivered": 0, "retried": 0, "dead": 0}

    def __repr__(self) -> str:
        return f"Relay({[s.name for s in self.sinks]!r}, {self.store!r})"

    # -- one round ----------------------------------------------------------------------------

    def run_once(self) -> int:
        """One round over every sink; returns the rows it delivered."""
        done = 0
        for sink in self.sinks:
            claim = runner.run_sync(
                self.store.take(sink.name, self.relay_id, self.batch_size, self.lease),
                STORE_TIMEOUT,
            )
            committed = False
            try:
                if claim.rows:
                    done += self._deliver(sink, claim)
                committed = True
            finally:
                # Without the commit (the store failed mid-way), the rows not marked go back.
                self._store(claim.close(commit=committed))
        return done

    def _deliver(self, sink: Sink, claim: Claim) -> int:
        # A sink may take fewer events per send than a claim holds (``Sink.max_batch``): the
        # claim goes out in slices, in order. A slice that fails fails the rest of the claim
        # with it (nothing after it overtakes it); the delivered ones are marked in one go.
        batch = claim.rows
        size = sink.max_batch or len(batch)
        done: list[int] = []
        ok = True
        try:
            for i in range(0, len(batch), size):
                part = batch[i : i + size]
                try:
                    sink.send(part)
                except DeliveryRefused as exc:
                    self._store(claim.dead([d.seq for d in part], str(exc), exc.response))
                    self.counts["dead"] += len(part)
                    logger.warning(
                        "hookwire: %s refused %d event(s): %s", sink.name, len(part), exc
                    )
                    continue
                except Exception as exc:
                    ok = False
                    self._failed(sink, claim, batch[i:], exc)
                    break
                done.extend(d.seq for d in part)
        finally:
            if done:
                self._store(claim.delivered(done))
                self.counts["delivered"] += len(done)
        if ok and done and self._failure_log.logged:
            logger.warning("hookwire: sink %s takes events again", sink.name)
            self._failure_log.reset()
        return len(done)

    def _failed(self, sink: Sink, claim: Claim, batch: list[Delivery], exc: Exception) -> None:
        now = datetime.now(_UTC)
        seqs = [d.seq for d in batch]
        since = self._store(claim.failing_since(seqs))
        expired = [s for s, t in since.items() if (now - t).total_seconds() >= self.dead_after]
        if expired:
            self._store(claim.dead(expired, f"failing for {self.dead_after:.0f} s: {exc}"))
            self.counts["dead"] += len(expired)
        retry = [s for s in seqs if s not in set(expired)]
        if retry:
            attempts = max(d.attempts for d in batch) + 1
            wait = self.backoff(attempts, getattr(exc, "retry_after", None))
            self._store(claim.failed(retry, repr(exc), now + timedelta(seconds=wait), now))
            self.counts["retried"] += len(retry)
        self._failure_log(
            "hookwire: sink %s could not take %d event(s), retrying with a backoff (further "
            "failures are logged at debug level): %s",
            sink.name,
            len(batch),
            exc,
        )

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempts + 1``: exponential with jitter, at least
        ``retry_after``."""
        state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempts
        wait = float(self._wait(state))
        return max(wait, retry_after or 0.0)

    def _store(self, coro: Any) -> Any:
        return runner.run_sync(coro, STORE_TIMEOUT)

    # -- running --------------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False) -> None:
        """Deliver until :meth:`stop` (or, with ``until_idle``, until a round finds nothing
        due). A store that fails is logged and tried again after ``poll``."""
        while not self._stop.is_set():
            try:
                delivered = self.run_once()
            except Exception as exc:
                self._failure_log("hookwire: the relay %r failed a round: %s", self, exc)
                delivered = 0
            if delivered:
                continue
            if until_idle and self._idle():
                return
            self._stop.wait(self.poll)

    def _idle(self) -> bool:
        rows = runner.run_sync(self.store.status(), STORE_TIMEOUT)
        mine = {s.name for s in self.sinks}
        return not any(r["pending"] for r in rows if r["sink"] in mine)

    def start(self) -> threading.Thread:
        """Run :meth:`run` on a daemon thread of its own; :meth:`stop` ends it."""
        self._stop.clear()
        thread = threading.Thread(target=self.run, name=f"hookwire-relay-{self.relay_id}")
        thread.daemon = True
        thread.start()
        self._thread = thread
        return thread

    def stop(self, timeout: float | None = 10.0) -> None:
        """End :meth:`run` (after the round in hand) and close the sinks."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # closing must not hide what stopped the relay
                logger.debug("hookwire: closing sink %s failed: %r", sink.name, exc)
