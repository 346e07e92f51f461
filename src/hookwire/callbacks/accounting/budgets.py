"""Budgets: the ``Budget`` a handler enforces, the worst case a call can cost, and budget leases.

A lease is a reservation made under a run id of its own, with the claims' limits lowered so
that it is granted only if it and ``LEASE_HEADROOM`` more leases fit under the limit: a lease
never takes a budget over its limit, and the one-call overrun bound of the call-by-call checks
is unchanged. The calls it serves have no reservation of their own: their worst case is part of
the lease, which the database counts until its release, queued after the rows of all its calls
(the ledger's queue keeps the order, and settles after it has committed the rows).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from ... import pricing
from ...errors import BudgetExceeded, ConfigurationError, InvalidUsageError
from ...events import Usage
from ...ids import new_id
from ...llms.estimate import IMAGE_TOKENS, estimate_prompt_tokens
from ...stores import runner
from ...stores.ledger import SCOPES, Claim, UsageLedger, period_start

__all__ = [
    "IMAGE_TOKENS",
    "LEASE_HEADROOM",
    "LEASE_LIFE",
    "Budget",
    "BudgetLeases",
    "answered",
    "estimate_prompt_tokens",
    "worst_case",
]

logger = logging.getLogger("hookwire")

_UTC = timezone.utc


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit: ``limit`` (in ``currency``) per ``period`` for each ``scope``.

    ``period`` is ``"day"`` or ``"month"`` (calendar periods in UTC) or ``None`` (all time).
    ``scope`` is ``"user"``, ``"org"`` or ``"agent"``: each user (org, agent) has its own
    budget, keyed by the call's request context (``user_id``, ``org_id``, ``agent``) or the
    handler's own ids. ``key`` pins the budget to one user (org, agent) instead.
    """

    limit: Decimal
    period: str | None = "day"
    scope: str = "user"
    key: str | None = None
    currency: str = "USD"

    def __post_init__(self) -> None:
        limit: Any = self.limit  # any amount is accepted, and kept as a Decimal
        try:
            if isinstance(limit, bool) or not isinstance(limit, (int, float, str, Decimal)):
                raise InvalidOperation
            value = Decimal(repr(limit)) if isinstance(limit, float) else Decimal(limit)
        except InvalidOperation:
            raise ConfigurationError(
                f"Budget limit must be an amount of money such as Decimal('10.00'), not {limit!r}"
            ) from None
        if not value.is_finite() or value < 0:
            raise ConfigurationError(f"Budget limit must be zero or more, not {limit!r}")
        object.__setattr__(self, "limit", value)
        if self.period not in ("day", "month", None):
            raise ConfigurationError(
                f"Budget period must be 'day', 'month' or None (all time), not {self.period!r}"
            )
        if self.scope not in SCOPES:
            raise ConfigurationError(
                f"Budget scope must be one of {', '.join(SCOPES)}, not {self.scope!r}"
            )
        if not isinstance(self.currency, str) or len(self.currency) != 3:
            raise ConfigurationError(
                f"Budget currency must be a three-letter code such as 'USD', not {self.currency!r}"
            )
        object.__setattr__(self, "currency", self.currency.upper())


# Per model asked for, the most tokens an answer has run past its call's max_tokens in this
# process (a server that does not honour max_tokens): later calls reserve that much more.
_EXCESS: dict[str, int] = {}


def worst_case(
    model: str | None,
    prompt: Any,
    max_tokens: int,
    provider: str | None,
    unpriced: pricing.ModelPrices | None,
) -> Decimal:
    """The most a call can cost: its prompt's upper bound and ``max_tokens`` of answer (plus
    the most this process has seen the model run past its max_tokens), at the model's prices,
    or at ``unpriced`` (default: the dearest known, ``pricing.dearest_prices()``) for a model
    without a known price, whose answer may come back billed as another model."""
    prompt_tokens = estimate_prompt_tokens(prompt)
    amount: Decimal | None = None
    if model:
        max_tokens += _EXCESS.get(model, 0)
        try:
            amount = pricing.estimate(model, prompt_tokens, max_tokens, provider)
        except InvalidUsageError:
            amount = None
    if amount is None:
        prices = unpriced if unpriced is not None else pricing.dearest_prices()
        amount = prices.cost(Usage(prompt_tokens, max_tokens))
    return amount


def answered(model: str | None, max_tokens: int, completion_tokens: int) -> None:
    """A call asked ``model`` for at most ``max_tokens`` and got ``completion_tokens``: if
    more, the model's later calls in this process reserve for that much more (logged once per
    model and new maximum)."""
    excess = completion_tokens - max_tokens
    if not model or excess <= _EXCESS.get(model, 0):
        return
    if len(_EXCESS) >= 4096 and model not in _EXCESS:
        return  # one entry per model name: a bound, not a cache to churn
    _EXCESS[model] = excess
    logger.warning(
        "hookwire: %s answered with %d tokens, past the max_tokens of %d its budget "
        "reservation was made for; the call is charged its real cost, and later calls to it "
        "reserve %d tokens more",
        model,
        completion_tokens,
        max_tokens,
        excess,
    )


#: How long (seconds) a budget lease serves calls; renewed in the background from half-way on.
LEASE_LIFE: Final = 1.0
#: A lease is granted only while the budget has room for this many leases on top of it, so
#: that near the limit every call is checked against the database, one by one.
LEASE_HEADROOM: Final = 4

_Signature = tuple[tuple[str, str, str | None, str, str, Decimal], ...]
#: The most sets of budgets whose call rate a handler remembers.
_SEEN_MAX: Final = 4096


@dataclass(slots=True, eq=False)
class _Lease:
    """Budget reserved ahead in one database round trip, handed out to calls in this process.

    The database counts ``size`` as reserved (under the run id ``id``) until the lease is
    released, and it is released only once it serves no more calls and every call it served
    has ended (its row queued before the release, so written first)."""

    id: str
    size: Decimal
    left: Decimal
    until: float  # time.monotonic(): serves calls until then
    renew_at: float
    pid: int
    in_flight: int = 0
    retired: bool = False
    released: bool = False


class BudgetLeases:
    """One handler's budget leases in this process: which lease serves which budgets, the
    calls each serves until they end, and the leases being taken in the background.

    ``calls`` is the size of a lease in calls' worst cases (``0``: no leases); ``ttl`` the
    seconds a lease's reservation counts if it is never released; ``release(id)`` queues the
    release of a reservation behind the rows already queued (the ledger's queue).
    """

    def __init__(
        self, store: UsageLedger, release: Callable[[str], None], calls: int, ttl: float, name: str
    ) -> None:
        self.store = store
        self.calls = calls
        self.ttl = ttl
        self.name = name
        self._lock = threading.Lock()
        self._release = release
        #: The lease serving each set of budgets (its signature: scopes, keys, periods, limits).
        self.leases: dict[_Signature, _Lease] = {}
        #: Runs served by a lease, until they end.
        self.covered: dict[str, _Lease] = {}
        self._acquiring: dict[_Signature, concurrent.futures.Future[None]] = {}
        self._pause: dict[_Signature, float] = {}
        #: Per set of budgets: when its last call came, and the mean time between its calls.
        self._seen: dict[_Signature, tuple[float, float]] = {}
        self._pid = os.getpid()

    def take(self, run_id: str, claims: Sequence[Claim], serve: bool = True) -> bool:
        """Serve the call from this process's lease on its budgets, if one has room, and
        renew the lease in the background when it is half used or half way through its life.
        ``serve=False``: only take a lease, for a call checked one by one (after its check, so
        that the two do not queue for the same rows)."""
        amount = claims[0].amount
        if amount <= 0:
            return False  # an unpriced call: only the database can tell if the budget is spent
        now = datetime.now(_UTC)
        sig: _Signature = tuple(
            (c.scope, c.key, c.period, period_start(c.period, now), c.currency, c.limit)
            for c in claims
        )
        t = time.monotonic()
        if self._pid != os.getpid():
            self._forget()
        with self._lock:
            if serve and run_id in self.covered:
                return True  # the same run checked twice: served once
            if serve:
                self._saw(sig, t)
            lease = self.leases.get(sig)
            served = (
                serve
                and lease is not None
                and t < lease.until
                and lease.left >= amount
                and lease.pid == os.getpid()
            )
            if served:
                assert lease is not None
                lease.left -= amount
                lease.in_flight += 1
                self.covered[run_id] = lease
                renew = t >= lease.renew_at or lease.left < lease.size / 2
            else:
                # The call is checked first, then a lease taken: if its budgets have had
                # another call within a lease's life (else it would lapse unused: a lease for
                # a user seen once costs two round trips more than their one check).
                renew = not serve and sig in self._seen and self._seen[sig][1] < LEASE_LIFE
            renew = renew and sig not in self._acquiring and t >= self._pause.get(sig, 0.0)
            if renew:
                future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
                    self._acquire(sig, claims, amount * self._size(sig), now),
                    runner.get_loop(),
                )
                self._acquiring[sig] = future
        return served

    def _saw(self, sig: _Signature, t: float) -> None:
        """Count a call of ``sig``'s budgets (lock held)."""
        seen = self._seen
        last = seen.get(sig)
        if last is None:
            if len(seen) >= _SEEN_MAX:
                # One entry per budget key (user, org, agent): keep those seen lately.
                for k in [k for k, (at, _) in seen.items() if at < t - LEASE_LIFE]:
                    del seen[k]
                if len(seen) >= _SEEN_MAX:
                    seen.clear()
            seen[sig] = (t, float("inf"))
            return
        at, mean = last
        gap = t - at
        # A moving mean of the gaps between calls; a long silence starts it again.
        seen[sig] = (t, gap if mean == float("inf") or gap > LEASE_LIFE else (mean + gap) / 2)

    def _size(self, sig: _Signature) -> int:
        """Calls a lease of ``sig``'s budgets serves: as many as come in a lease's life at
        the rate seen (at least 2, at most ``calls``)."""
        mean = self._seen[sig][1] if sig in self._seen else LEASE_LIFE
        return max(2, min(self.calls, math.ceil(LEASE_LIFE / max(mean, 1e-6))))

    async def _acquire(
        self, sig: _Signature, claims: Sequence[Claim], size: Decimal, now: datetime
    ) -> None:
        """Reserve a lease on the store loop (never on the caller's path)."""
        lease_claims = [
            dataclasses.replace(c, amount=size, limit=c.limit - size * (LEASE_HEADROOM + 1))
            for c in claims
        ]
        lease_id = "lease-" + new_id()
        granted = False
        try:
            if all(c.limit > 0 for c in lease_claims):
                await self.store.reserve(lease_id, lease_claims, ttl=self.ttl, now=now)
                granted = True
        except BudgetExceeded:
            pass  # too close to the limit: calls are checked one by one
        except Exception as exc:
            logger.debug("hookwire: %s could not take a budget lease: %r", self.name, exc)
        t = time.monotonic()
        with self._lock:
            self._acquiring.pop(sig, None)
            if not granted:
                pause = self._pause
                if len(pause) >= 1024:
                    # One per budget key (user, org, agent) refused a lease: keep the live ones.
                    for k in [k for k, until in pause.items() if until <= t]:
                        del pause[k]
                pause[sig] = t + LEASE_LIFE
                return
            lease = _Lease(lease_id, size, size, t + LEASE_LIFE, t + LEASE_LIFE / 2, os.getpid())
            old = self.leases.get(sig)
            self.leases[sig] = lease
            if old is not None:
                self._retire(old)
        # Given back when its life ends even if no call comes to notice.
        asyncio.get_running_loop().call_later(LEASE_LIFE, self._expire, sig, lease)

    def _expire(self, sig: _Signature, lease: _Lease) -> None:
        with self._lock:
            if self.leases.get(sig) is lease:
                del self.leases[sig]
            self._retire(lease)

    def _retire(self, lease: _Lease) -> None:
        """No more calls for ``lease``; release it once its calls have ended (lock held)."""
        lease.retired = True
        if lease.in_flight == 0 and not lease.released and lease.pid == os.getpid():
            # (A forked child leaves its parent's leases to the parent.)
            lease.released = True
            self._release(lease.id)

    def retire_all(self, wait: float = 0.0) -> None:
        """Give back every lease (after a refused check, so that this process's own leases
        do not refuse its calls; at ``flush``). ``wait``: seconds to wait for leases being
        taken, so that none is installed after this."""
        if not self.calls:
            return
        if self._pid != os.getpid():
            self._forget()
        with self._lock:
            pending = list(self._acquiring.values())
        if pending and wait > 0 and not runner.in_store_loop():
            concurrent.futures.wait(pending, timeout=wait)
        with self._lock:
            leases = list(self.leases.values())
            self.leases.clear()
            for lease in leases:
                self._retire(lease)

    def _forget(self) -> None:
        """In a forked child: the parent's leases (and leases being taken) are the parent's
        to use and give back."""
        # The child has only this thread: a lock another thread of the parent held is lost.
        self._lock = threading.Lock()
        with self._lock:
            self.leases.clear()
            self.covered.clear()
            self._acquiring.clear()
            self._pause.clear()
            self._seen.clear()
            self._pid = os.getpid()

    def ended(self, run_id: str) -> bool:
        """A run has ended (its row or release queued): whether a lease had served it."""
        with self._lock:
            lease = self.covered.pop(run_id, None)
            if lease is None:
                return False
            lease.in_flight -= 1
            if lease.retired:
                self._retire(lease)
        return True
