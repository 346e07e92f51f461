"""``AccountingCallbackHandler``: a durable ledger of LLM usage and cost, and budgets.

Attached to a runner or a client (``callbacks=[accounting]``), the handler records every LLM
call from ``on_llm_end``: who it was for (user, org, agent), the model and provider, the token
counts, the cost (``hookwire.pricing``), and the request's ids. Rows are written in the
background, in batches, to the ledger of ``hookwire.stores`` (SQLite ``./hookwire.db`` by
default, PostgreSQL by URL); ``flush()`` waits for them, and they are flushed at exit.

It also works by hand, as in Arshai's documentation::

    accounting = AccountingCallbackHandler(
        correlation_id="correlation-id", request_id="request-id", user_id="user-123"
    )
    accounting.model_name = "gpt-4"
    await accounting.call_accounting(output_tokens=150, prompt_tokens=100, agent_slug="support")

A call is never counted twice: the ledger is idempotent by run id, and ``call_accounting``
pairs itself with the LLM call the handler saw last (or takes ``run_id=``), so a call recorded
both automatically and by hand counts once.

Budgets (``Budget(limit, period="day" | "month" | None, scope="user" | "org" | "agent")``) are
checked before each LLM call, inline (not in the background), and reserve the call's
worst-case cost until its real cost is recorded. A scope at or over its limit stops the call
with ``hookwire.errors.BudgetExceeded``: the one kind of handler error meant to reach the
caller.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from .. import pricing
from ..context import current_context
from ..errors import BudgetExceeded, ConfigurationError, HookwireError, InvalidUsageError
from ..events import LLMResponse, Usage
from ..ids import new_id
from ..stores import runner
from ..stores.ledger import SCOPES, Claim, UsageLedger, UsageRecord, period_start
from ..stores.schema import has_lone_surrogate
from .base import BaseCallback

__all__ = ["AccountingCallbackHandler", "Budget", "UsageRecord", "estimate_prompt_tokens"]

logger = logging.getLogger("hookwire")

_UTC = timezone.utc
_BATCH: Final = 1000
#: Seconds between a row's end of call and the start of its write (``flush`` waits for it).
_WRITE_DELAY: Final = 0.01


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


#: The ledger's column sizes: longer values are cut to fit rather than refused.
_SIZES: Final = {
    "user_id": 255,
    "org_id": 255,
    "agent": 255,
    "conversation_id": 64,
    "model": 255,
    "provider": 64,
    "correlation_id": 255,
    "request_id": 255,
    "trace_id": 64,
}


def _fit(record: UsageRecord) -> UsageRecord:
    # Usage is money: a value the columns cannot take is made to fit (cut, NUL and lone
    # surrogates written as escapes) rather than losing the row.
    long: dict[str, Any] = {
        k: str(getattr(record, k))[:n]
        for k, n in _SIZES.items()
        if getattr(record, k) is not None
        and (not isinstance(getattr(record, k), str) or len(getattr(record, k)) > n)
    }
    for k in _SIZES:
        value = long.get(k, getattr(record, k))
        # NUL: PostgreSQL refuses it; a lone surrogate: not UTF-8.
        if isinstance(value, str) and ("\x00" in value or has_lone_surrogate(value)):
            value = value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace")
            long[k] = value.decode("utf-8")[: _SIZES[k]]
    return dataclasses.replace(record, **long) if long else record


#: Tokens reserved per image in a prompt: OpenAI's high-detail 2048x2048 tile count (1,105)
#: with a margin. An image's bytes say nothing about its tokens.
IMAGE_TOKENS: Final = 1_600
_IMAGE_PARTS: Final = frozenset({"image_url", "input_image", "image"})


def estimate_prompt_tokens(prompt: Any) -> int:
    """An upper bound of the tokens a prompt can use: its UTF-8 bytes (a byte-level BPE token
    is at least one byte) plus a few per message for roles and separators; an image part
    (``{"type": "image_url", ...}``) counts ``IMAGE_TOKENS``."""
    if prompt is None:
        return 0
    if isinstance(prompt, str):
        return len(prompt.encode("utf-8", "replace")) + 8
    if isinstance(prompt, Mapping):
        if prompt.get("type") in _IMAGE_PARTS:
            return IMAGE_TOKENS
        total = 8
        for v in prompt.values():
            total += estimate_prompt_tokens(v) if not isinstance(v, str) else len(v.encode()) + 1
        return total
    if isinstance(prompt, (list, tuple)):
        return 3 + sum(estimate_prompt_tokens(m) for m in prompt)
    return len(str(prompt).encode("utf-8", "replace")) + 8


#: How long (seconds) a budget lease serves calls; renewed in the background from half-way on.
LEASE_LIFE: Final = 1.0
#: A lease is granted only while the budget has room for this many leases on top of it, so
#: that near the limit every call is checked against the database, one by one.
LEASE_HEADROOM: Final = 4

_Signature = tuple[tuple[str, str, str | None, str, str, Decimal], ...]


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


_WRITERS: weakref.WeakSet[_Writer] = weakref.WeakSet()


def _writers_after_fork() -> None:
    for writer in list(_WRITERS):
        writer._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_writers_after_fork)


class _Writer:
    """Batches ledger writes on the store loop; the caller's thread only appends."""

    def __init__(self, ledger: UsageLedger, name: str) -> None:
        self.ledger = ledger
        self.name = name
        self._reset_after_fork()
        _WRITERS.add(self)

    def _reset_after_fork(self) -> None:
        # Also the initial state. In a forked child the parent's queued rows are the parent's
        # to write (it goes on), its drain was scheduled on a loop the child does not have, and
        # its lock may have been held by a thread the child does not have: start empty.
        self._pending: collections.deque[UsageRecord | str] = collections.deque()
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._scheduled = False
        self._submitted = 0
        self._written = 0
        self._failures = 0
        self.dropped = 0
        #: Whether the last write failed (the rows are kept and retried).
        self.failing = False
        self._stopped = False

    def submit(self, item: UsageRecord | str) -> None:
        with self._lock:
            self._pending.append(item)
            self._submitted += 1
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            asyncio.run_coroutine_threadsafe(self._drain(), runner.get_loop())

    async def _drain(self) -> None:
        # Start a little later: the caller's next budget check, often right after a call's
        # end, then meets neither this write on the server nor its Python for the GIL.
        await asyncio.sleep(_WRITE_DELAY)
        delay = 0.05
        while True:
            with self._lock:
                n = min(len(self._pending), _BATCH)
                batch = [self._pending.popleft() for _ in range(n)]
                if not batch:
                    self._scheduled = False
                    self._done.notify_all()
                    return
            records = [b for b in batch if isinstance(b, UsageRecord)]
            releases = [b for b in batch if isinstance(b, str)]
            try:
                await self.ledger.record(records, release=releases)
            except Exception as exc:
                if _is_data_error(exc):
                    # The database refuses some row itself (retrying cannot help): write the
                    # batch row by row and drop only the rows it refuses.
                    await self._one_by_one(batch)
                    with self._lock:
                        self._written += len(batch)
                        self._done.notify_all()
                    continue
                # Keep the rows and try again: the database may be restarting or locked.
                self._failures += 1
                if self._stopped:
                    self._give_up(batch)
                    continue
                with self._lock:
                    self._pending.extendleft(reversed(batch))
                self.failing = True
                if self._failures == 1:
                    logger.error(
                        "hookwire: %s could not write %d usage row(s) to %s; retrying "
                        "(further failures are logged at debug level)",
                        self.name,
                        len(batch),
                        self.ledger,
                        exc_info=exc,
                    )
                else:
                    logger.debug("hookwire: %s write failed again: %r", self.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.05
            self.failing = False
            with self._lock:
                self._written += len(batch)
                self._done.notify_all()

    async def _one_by_one(self, batch: list[UsageRecord | str]) -> None:
        for item in batch:
            try:
                if isinstance(item, UsageRecord):
                    await self.ledger.record([item])
                else:
                    await self.ledger.release([item])
            except Exception as exc:
                if not _is_data_error(exc):
                    raise
                self.dropped += 1
                logger.error(
                    "hookwire: %s dropped a usage row the database refuses (%s): %r",
                    self.name,
                    exc,
                    item,
                )

    def stop(self) -> None:
        """Stop retrying: rows that cannot be written from now on are dropped (logged)."""
        self._stopped = True
        if self.failing:
            # The writer is waiting to retry, with its rows back in the queue: drop them now.
            self._give_up([])

    def _give_up(self, batch: list[UsageRecord | str]) -> None:
        with self._lock:
            rest = list(self._pending)
            self._pending.clear()
            lost = len(batch) + len(rest)
            if not lost:
                return
            self._written += lost
            self.dropped += sum(1 for b in [*batch, *rest] if isinstance(b, UsageRecord))
            self._done.notify_all()
        logger.error(
            "hookwire: %s was closed while %s refused writes; %d queued usage row(s) lost",
            self.name,
            self.ledger,
            lost,
        )

    @property
    def pending(self) -> int:
        return self._submitted - self._written

    async def settle(self, timeout: float) -> None:
        """Wait (without blocking the event loop) until what was queued before is written,
        or ``timeout`` seconds pass."""
        target = self._submitted
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Polled: the writer runs on the store loop, which may be another thread's loop than
        # the caller's, and an asyncio.Event serves one loop only.
        while self._written < target and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)

    def flush(self, timeout: float | None = None) -> bool:
        if runner.in_store_loop():
            return self.pending == 0  # waiting here would block the writer itself
        with self._lock:
            target = self._submitted
            return self._done.wait_for(lambda: self._written >= target, timeout)


def _is_data_error(exc: BaseException) -> bool:
    """Whether the database refused the data itself (too long, out of range, a constraint),
    as opposed to failing to take it now (a lost connection, a lock)."""
    from sqlalchemy.exc import DataError, IntegrityError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (DataError, IntegrityError)):
            return True
        # PostgreSQL drivers say it with the SQLSTATE: class 22 is "data exception", class 23
        # "integrity constraint violation".
        sqlstate = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in ("22", "23"):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


_HANDLERS: weakref.WeakSet[AccountingCallbackHandler] = weakref.WeakSet()


@atexit.register
def _flush_at_exit() -> None:
    for handler in list(_HANDLERS):
        try:
            handler.flush(timeout=10.0)
        except Exception:  # pragma: no cover - never spoil interpreter exit
            logger.exception("hookwire: flushing usage rows at exit failed")


def _noop_start(prompt: Any, **kwargs: Any) -> None:
    return None


async def _anoop_start(prompt: Any, **kwargs: Any) -> None:
    return None


_noop_start.__hookwire_noop__ = True  # type: ignore[attr-defined]
_anoop_start.__hookwire_noop__ = True  # type: ignore[attr-defined]


class AccountingCallbackHandler(BaseCallback):
    """Records every LLM call's usage and cost in a durable ledger, and enforces budgets.

    ``correlation_id``, ``request_id``, ``user_id`` (and ``org_id``, ``agent``) are used for
    calls whose request context does not say otherwise. ``budgets`` is a ``Budget`` or a list
    of them. ``store`` (a ``UsageLedger``: any implementation) or ``database_url`` chooses the
    database (default: ``HOOKWIRE_DATABASE_URL``, else ``./hookwire.db``).

    ``default_max_tokens`` is the worst case reserved for a call that sets no ``max_tokens``;
    ``reservation_ttl`` (seconds) is how long a reservation counts if its call never reports
    back; with ``fail_open=True`` (the default) a budget that cannot be checked because the
    database is unreachable lets the call through (logged), with ``False`` it stops it.
    ``settle_wait`` (seconds) is how long a refused budget check waits for this handler's
    queued rows to be written before it checks again, so that calls that already ended count
    at their real cost rather than their worst case.

    ``budget_lease`` (calls; ``0`` turns it off) lets a process reserve that many calls' worst
    case ahead, in one background round trip, and check its next calls against it without
    going to the database: a budget then costs a call no round trip. The lease is counted by
    every process's check as reserved, is granted only while the budget has room for
    ``LEASE_HEADROOM`` more leases (so near the limit every call is checked one by one, as
    without leases), serves calls for ``LEASE_LIFE`` second, and is given back once its calls
    have ended (or at ``flush``, ``close`` and exit). A process can so hold back up to one
    lease of a budget from other processes for about a second.
    """

    name = "AccountingCallbackHandler"

    def __init__(
        self,
        correlation_id: str | None = None,
        request_id: str | None = None,
        user_id: str | None = None,
        *,
        org_id: str | None = None,
        agent: str | None = None,
        model_name: str | None = None,
        provider: str | None = None,
        budgets: Budget | Iterable[Budget] = (),
        store: UsageLedger | None = None,
        database_url: str | None = None,
        default_max_tokens: int = 4096,
        reservation_ttl: float = 600.0,
        fail_open: bool = True,
        settle_wait: float = 2.0,
        budget_lease: int = 16,
    ) -> None:
        if store is not None and database_url is not None:
            raise ConfigurationError("pass store= or database_url=, not both")
        if store is not None and not isinstance(store, UsageLedger):
            raise ConfigurationError(
                f"store must be a hookwire.stores.UsageLedger (any implementation of it), not "
                f"{type(store).__name__}; to name a database use database_url="
            )
        self.correlation_id = correlation_id
        self.request_id = request_id
        self.user_id = user_id
        self.org_id = org_id
        self.agent = agent
        #: The model of calls recorded by hand (set it, or let the last LLM call set it).
        self.model_name = model_name
        self.provider = provider
        self.budgets: tuple[Budget, ...] = (
            (budgets,) if isinstance(budgets, Budget) else tuple(budgets)
        )
        for b in self.budgets:
            if not isinstance(b, Budget):
                raise ConfigurationError(
                    f"budgets must be Budget objects, not {type(b).__name__}: "
                    "budgets=[Budget(10, period='day', scope='user')]"
                )
        if isinstance(default_max_tokens, bool) or not isinstance(default_max_tokens, int):
            raise ConfigurationError("default_max_tokens must be a positive integer")
        if default_max_tokens <= 0:
            raise ConfigurationError("default_max_tokens must be a positive integer")
        if reservation_ttl <= 0:
            raise ConfigurationError("reservation_ttl must be a positive number of seconds")
        if isinstance(budget_lease, bool) or not isinstance(budget_lease, int) or budget_lease < 0:
            raise ConfigurationError(
                f"budget_lease must be a number of calls (0 for none), not {budget_lease!r}"
            )
        self.budget_lease = budget_lease
        self.default_max_tokens = default_max_tokens
        self.reservation_ttl = float(reservation_ttl)
        self.fail_open = fail_open
        self.settle_wait = float(settle_wait)
        self.store = store if store is not None else UsageLedger.for_url(database_url)
        self._writer = _Writer(self.store, self.name)
        self._last_run: str | None = None
        self._claimed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lease_lock = threading.Lock()
        self._leases: dict[_Signature, _Lease] = {}
        # Runs served by a lease, until they end.
        self._covered: dict[str, _Lease] = {}
        self._acquiring: dict[_Signature, concurrent.futures.Future[None]] = {}
        self._lease_pause: dict[_Signature, float] = {}
        self._lease_pid = os.getpid()
        if not self.budgets:
            # Without budgets the handler has nothing to do before a call: leave on_llm_start
            # out of dispatch entirely.
            self.on_llm_start = _noop_start  # type: ignore[method-assign]
            self.aon_llm_start = _anoop_start  # type: ignore[method-assign]
        _HANDLERS.add(self)

    def __repr__(self) -> str:
        return (
            f"AccountingCallbackHandler(user_id={self.user_id!r}, budgets={len(self.budgets)}, "
            f"store={self.store!r})"
        )

    # -- budgets, before the call (inline) ----------------------------------------------------

    def _claims(self, prompt: Any, kwargs: Mapping[str, Any]) -> list[Claim]:
        params = kwargs.get("invocation_params") or {}
        model = kwargs.get("model") or params.get("model") or self.model_name
        provider = kwargs.get("provider") or self.provider
        max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
            max_tokens = self.default_max_tokens
        amount: Decimal | None = None
        if model:
            try:
                amount = pricing.estimate(
                    model, estimate_prompt_tokens(prompt), max_tokens, provider
                )
            except InvalidUsageError:
                amount = None
        claims = []
        for b in self.budgets:
            key = b.key or kwargs.get(SCOPES[b.scope]) or self._own(b.scope)
            if key is None:
                continue  # this call is for no user (org, agent): the budget does not apply
            claims.append(
                Claim(b.scope, str(key), b.period, b.limit, amount or Decimal(0), b.currency)
            )
        return claims

    def _own(self, scope: str) -> str | None:
        return {"user": self.user_id, "org": self.org_id, "agent": self.agent}[scope]

    # Two implementations of one check, so that neither dispatch path hops between threads or
    # event loops: sync dispatch calls on_llm_start in the caller's thread (a psycopg call on
    # PostgreSQL), async dispatch awaits aon_llm_start on the caller's loop (asyncpg there).

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        """Check the budgets and reserve the call's worst-case cost; raises ``BudgetExceeded``."""
        claims = self._claims(prompt, kwargs)
        if not claims:
            return
        run_id = kwargs.get("run_id") or new_id()
        if self.budget_lease and self._take(run_id, claims):
            return
        try:
            try:
                self.store.reserve_sync(run_id, claims, ttl=self.reservation_ttl)
            except BudgetExceeded:
                self._retire_leases()
                if not self._writer.pending or self._writer.failing:
                    raise
                # Calls that ended here still count at their worst case until their rows are
                # written: wait for those rows, then check again with what they really cost.
                self._writer.flush(self.settle_wait)
                self.store.reserve_sync(run_id, claims, ttl=self.reservation_ttl)
        except BudgetExceeded:
            raise
        except HookwireError as exc:
            self._unchecked(claims, exc)
            return
        if self.budget_lease:
            self._take(run_id, claims, serve=False)

    async def aon_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        """``on_llm_start`` for async dispatch: the same check, awaited on the caller's loop."""
        claims = self._claims(prompt, kwargs)
        if not claims:
            return
        run_id = kwargs.get("run_id") or new_id()
        if self.budget_lease and self._take(run_id, claims):
            return
        try:
            try:
                await self.store.areserve(run_id, claims, ttl=self.reservation_ttl)
            except BudgetExceeded:
                self._retire_leases()
                if not self._writer.pending or self._writer.failing:
                    raise
                await self._writer.settle(self.settle_wait)
                await self.store.areserve(run_id, claims, ttl=self.reservation_ttl)
        except BudgetExceeded:
            raise
        except HookwireError as exc:
            self._unchecked(claims, exc)
            return
        if self.budget_lease:
            self._take(run_id, claims, serve=False)

    def _unchecked(self, claims: Sequence[Claim], exc: HookwireError) -> None:
        """A budget that could not be checked: let the call through (``fail_open``) or stop it."""
        if self.fail_open:
            logger.error(
                "hookwire: budget check failed (%s); the call goes ahead because fail_open=True",
                exc,
            )
            return
        raise BudgetExceeded(
            f"the budget could not be checked ({exc}); the call was stopped because "
            "fail_open=False",
            scope=claims[0].scope,
            key=claims[0].key,
            limit=claims[0].limit,
        ) from exc

    # -- budget leases ------------------------------------------------------------------------
    #
    # A lease is a reservation made under a run id of its own, with the claims' limits lowered
    # so that it is granted only if it and LEASE_HEADROOM more leases fit under the limit: a
    # lease never takes a budget over its limit, and the one-call overrun bound of the
    # call-by-call checks is unchanged. The calls it serves have no reservation of their own:
    # their worst case is part of the lease, which the database counts until its release,
    # queued after the rows of all its calls (the writer keeps the order, and settles after it
    # has committed the rows).

    def _take(self, run_id: str, claims: Sequence[Claim], serve: bool = True) -> bool:
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
        if self._lease_pid != os.getpid():
            self._forget_leases()
        with self._lease_lock:
            if serve and run_id in self._covered:
                return True  # the same run checked twice: served once
            lease = self._leases.get(sig)
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
                self._covered[run_id] = lease
                renew = t >= lease.renew_at or lease.left < lease.size / 2
            else:
                renew = not serve  # the call is checked first, then a lease taken
            renew = renew and sig not in self._acquiring and t >= self._lease_pause.get(sig, 0.0)
            if renew:
                future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
                    self._acquire(sig, claims, amount * self.budget_lease, now),
                    runner.get_loop(),
                )
                self._acquiring[sig] = future
        return served

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
                await self.store.reserve(lease_id, lease_claims, ttl=self.reservation_ttl, now=now)
                granted = True
        except BudgetExceeded:
            pass  # too close to the limit: calls are checked one by one
        except Exception as exc:
            logger.debug("hookwire: %s could not take a budget lease: %r", self.name, exc)
        t = time.monotonic()
        with self._lease_lock:
            self._acquiring.pop(sig, None)
            if not granted:
                pause = self._lease_pause
                if len(pause) >= 1024:
                    # One per budget key (user, org, agent) refused a lease: keep the live ones.
                    for k in [k for k, until in pause.items() if until <= t]:
                        del pause[k]
                pause[sig] = t + LEASE_LIFE
                return
            lease = _Lease(lease_id, size, size, t + LEASE_LIFE, t + LEASE_LIFE / 2, os.getpid())
            old = self._leases.get(sig)
            self._leases[sig] = lease
            if old is not None:
                self._retire(old)
        # Given back when its life ends even if no call comes to notice.
        asyncio.get_running_loop().call_later(LEASE_LIFE, self._expire, sig, lease)

    def _expire(self, sig: _Signature, lease: _Lease) -> None:
        with self._lease_lock:
            if self._leases.get(sig) is lease:
                del self._leases[sig]
            self._retire(lease)

    def _retire(self, lease: _Lease) -> None:
        """No more calls for ``lease``; release it once its calls have ended (lock held)."""
        lease.retired = True
        if lease.in_flight == 0 and not lease.released and lease.pid == os.getpid():
            # (A forked child leaves its parent's leases to the parent.)
            lease.released = True
            self._writer.submit(lease.id)

    def _retire_leases(self, wait: float = 0.0) -> None:
        """Give back every lease (after a refused check, so that this process's own leases
        do not refuse its calls; at ``flush``). ``wait``: seconds to wait for leases being
        taken, so that none is installed after this."""
        if not self.budget_lease:
            return
        if self._lease_pid != os.getpid():
            self._forget_leases()
        with self._lease_lock:
            pending = list(self._acquiring.values())
        if pending and wait > 0 and not runner.in_store_loop():
            concurrent.futures.wait(pending, timeout=wait)
        with self._lease_lock:
            leases = list(self._leases.values())
            self._leases.clear()
            for lease in leases:
                self._retire(lease)

    def _forget_leases(self) -> None:
        """In a forked child: the parent's leases (and leases being taken) are the parent's
        to use and give back."""
        # The child has only this thread: a lock another thread of the parent held is lost.
        self._lease_lock = threading.Lock()
        with self._lease_lock:
            self._leases.clear()
            self._covered.clear()
            self._acquiring.clear()
            self._lease_pause.clear()
            self._lease_pid = os.getpid()

    def _ended(self, run_id: str) -> bool:
        """A run has ended (its row or release queued): whether a lease had served it."""
        with self._lease_lock:
            lease = self._covered.pop(run_id, None)
            if lease is None:
                return False
            lease.in_flight -= 1
            if lease.retired:
                self._retire(lease)
        return True

    # -- recording, after the call (background) -----------------------------------------------

    def _record(
        self,
        run_id: str,
        usage: Usage,
        *,
        model: str | None,
        provider: str | None,
        cost: Decimal | None,
        currency: str,
        kwargs: Mapping[str, Any],
        source: str,
        created_at: datetime | None = None,
    ) -> UsageRecord:
        if cost is None and model:
            cost = pricing.cost(model, usage, provider)
            prices = pricing.price_of(model, provider) if cost is not None else None
            if prices is not None:
                currency = prices.currency
        else:
            pricing._check_usage(usage)
        return _fit(
            UsageRecord(
                run_id=run_id,
                created_at=created_at or datetime.now(_UTC),
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens
                if usage.total_tokens >= usage.prompt_tokens + usage.completion_tokens
                else usage.prompt_tokens + usage.completion_tokens,
                cached_tokens=usage.cached_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                cost=cost,
                currency=currency,
                user_id=kwargs.get("user_id") or self.user_id,
                org_id=kwargs.get("org_id") or self.org_id,
                agent=kwargs.get("agent") or self.agent,
                conversation_id=kwargs.get("conversation_id"),
                model=model,
                provider=provider,
                correlation_id=kwargs.get("correlation_id") or self.correlation_id,
                request_id=kwargs.get("request_id") or self.request_id,
                trace_id=kwargs.get("trace_id"),
                source=source,
            )
        )

    def on_llm_end(self, response: LLMResponse, **kwargs: Any) -> None:
        """Record the call (queued; written in the background)."""
        run_id = kwargs.get("run_id") or new_id()
        model = getattr(response, "model", None) or kwargs.get("model") or self.model_name
        provider = getattr(response, "provider", None) or kwargs.get("provider") or self.provider
        usage = getattr(response, "usage", None) or Usage()
        try:
            record = self._record(
                run_id,
                usage,
                model=model,
                provider=provider,
                cost=getattr(response, "cost", None),
                currency=getattr(response, "currency", None) or "USD",
                kwargs=kwargs,
                source="auto",
            )
        except InvalidUsageError:
            if self.budgets and not (self._covered and self._ended(run_id)):
                self._writer.submit(run_id)
            raise
        self._writer.submit(record)
        if self._covered:
            self._ended(run_id)
        if model:
            self.model_name = model
        if provider:
            self.provider = provider
        self._last_run = run_id

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        """The call failed: release its budget reservation (in the background)."""
        if self.budgets and kwargs.get("run_id"):
            run_id = str(kwargs["run_id"])
            if not (self._covered and self._ended(run_id)):
                self._writer.submit(run_id)

    # -- by hand (the seed's API) -------------------------------------------------------------

    def _pair(self, run_id: str | None) -> str:
        if run_id is not None:
            return run_id
        last = self._last_run
        if last is not None and last not in self._claimed:
            self._claimed[last] = None
            while len(self._claimed) > 1024:
                self._claimed.popitem(last=False)
            return last
        return new_id()

    async def call_accounting(
        self,
        output_tokens: int,
        prompt_tokens: int,
        agent_slug: str | None = None,
        *,
        run_id: str | None = None,
        cached_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        model: str | None = None,
        provider: str | None = None,
        user_id: str | None = None,
        org_id: str | None = None,
        cost: Decimal | None = None,
    ) -> UsageRecord:
        """Record one call's usage by hand and wait until it is in the ledger.

        The model is ``model`` or ``self.model_name``. User, org and agent are the arguments,
        else the caller's request context (``hookwire.request_context``), else the handler's.
        The run is ``run_id`` if given, else the last LLM call this handler recorded
        automatically (if not already paired), else a new one; a run already in the ledger is
        not counted again. Returns the record (its ``cost`` is ``None`` if the model's price is
        unknown). Negative or non-integer token counts raise ``InvalidUsageError``.
        """
        record = self._manual(
            output_tokens, prompt_tokens, agent_slug, run_id, cached_tokens, reasoning_tokens,
            model, provider, user_id, org_id, cost,
        )  # fmt: skip
        await runner.run(self.store.record([record]))
        return record

    def call_accounting_sync(
        self,
        output_tokens: int,
        prompt_tokens: int,
        agent_slug: str | None = None,
        *,
        run_id: str | None = None,
        cached_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        model: str | None = None,
        provider: str | None = None,
        user_id: str | None = None,
        org_id: str | None = None,
        cost: Decimal | None = None,
    ) -> UsageRecord:
        """``call_accounting`` for sync code (the same arguments; waits for the write)."""
        record = self._manual(
            output_tokens, prompt_tokens, agent_slug, run_id, cached_tokens, reasoning_tokens,
            model, provider, user_id, org_id, cost,
        )  # fmt: skip
        runner.run_sync(self.store.record([record]))
        return record

    def _manual(
        self,
        output_tokens: int,
        prompt_tokens: int,
        agent_slug: str | None,
        run_id: str | None,
        cached_tokens: int | None,
        reasoning_tokens: int | None,
        model: str | None,
        provider: str | None,
        user_id: str | None,
        org_id: str | None,
        cost: Decimal | None,
    ) -> UsageRecord:
        # Built in the caller's thread, so that its request context is the one read.
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=output_tokens,
            total_tokens=0,
            cached_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
        )
        pricing._check_usage(usage)
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=output_tokens,
            cached_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
        )
        # The request context of the caller (hookwire.trace / request_context) fills in what the
        # arguments do not say; the handler's own ids come last.
        context = current_context()
        explicit = {"user_id": user_id, "org_id": org_id, "agent": agent_slug}
        context.update({k: v for k, v in explicit.items() if v is not None})
        return self._record(
            self._pair(run_id),
            usage,
            model=model or self.model_name,
            provider=provider or self.provider,
            cost=cost,
            currency="USD",
            kwargs=context,
            source="manual",
        )

    # -- queries ------------------------------------------------------------------------------

    async def asummary(
        self,
        by: Sequence[str] | str = (),
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """``summary`` for async code."""
        return await runner.run(self.store.summary(by, since=since, until=until, where=where))

    def summary(
        self,
        by: Sequence[str] | str = (),
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Calls, tokens and cost grouped ``by`` any of ``user``, ``org``, ``agent``,
        ``model``, ``provider``, ``day``, ``month`` (see ``UsageLedger.summary``). Waits for
        the rows still queued first."""
        self.flush()
        return runner.run_sync(self.store.summary(by, since=since, until=until, where=where))

    # -- draining -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Rows queued and not yet written."""
        return self._writer.pending

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every queued row is written (and the budget leases no call uses are
        given back); ``False`` if ``timeout`` ran out first."""
        self._retire_leases(10.0 if timeout is None else timeout)
        return self._writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (waiting up to ``timeout`` seconds). Rows the database still
        refuses after that are dropped and logged, and the writer stops retrying."""
        self._retire_leases(timeout)
        if not self._writer.flush(timeout):
            logger.warning(
                "hookwire: %s closed with %d usage row(s) not yet written",
                self.name,
                self._writer.pending,
            )
            self._writer.stop()
            self._writer.flush(1.0)  # a write in progress fails, and gives its rows up
