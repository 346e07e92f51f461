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
pairs itself with the LLM call the handler saw last in the caller's context (or takes
``run_id=``; see ``manual``), so a call recorded both automatically and by hand counts once.

Budgets (``Budget(limit, period="day" | "month" | None, scope="user" | "org" | "agent")``) are
checked before each LLM call, inline (not in the background), and reserve the call's
worst-case cost until its real cost is recorded. A scope at or over its limit stops the call
with ``hookwire.errors.BudgetExceeded``: the one kind of handler error meant to reach the
caller.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import weakref
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Final

from ... import pricing
from ...context import current_context
from ...errors import BudgetExceeded, ConfigurationError, HookwireError, InvalidUsageError
from ...events import EmbeddingResponse, LLMResponse, Usage
from ...ids import new_id
from ...stores import runner
from ...stores.ledger import (
    ESTIMATED,
    MAX_COST,
    SCOPES,
    Claim,
    UsageLedger,
    UsageRecord,
    ledger_key,
)
from ...stores.schema import has_lone_surrogate
from ..base import BaseCallback
from .budgets import Budget, BudgetLeases, answered, worst_case
from .ledger_queue import ledger_queue
from .manual import Identity, RunPairing, check_cost, manual_cost, manual_text, manual_usage

__all__ = ["AccountingCallbackHandler"]

logger = logging.getLogger("hookwire")

_UTC = timezone.utc


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


_KEY_COLUMNS: Final = frozenset(SCOPES.values())


def _fit(record: UsageRecord) -> UsageRecord:
    # Usage is money: a value the columns cannot take is made to fit (cut, NUL and lone
    # surrogates written as escapes) rather than losing the row. User, org and agent ids take
    # the one form budget checks look them up by (ledger_key), so a budget finds its spend.
    long: dict[str, Any] = {}
    for k, n in _SIZES.items():
        value = getattr(record, k)
        if value is None:
            continue
        if k in _KEY_COLUMNS:
            key = ledger_key(str(value))
            if key is not value:
                long[k] = key
        elif not isinstance(value, str) or len(value) > n:
            long[k] = str(value)[:n]
    for k in _SIZES:
        if k in _KEY_COLUMNS:
            continue
        value = long.get(k, getattr(record, k))
        # NUL: PostgreSQL refuses it; a lone surrogate: not UTF-8.
        if isinstance(value, str) and ("\x00" in value or has_lone_surrogate(value)):
            value = value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace")
            long[k] = value.decode("utf-8")[: _SIZES[k]]
    return dataclasses.replace(record, **long) if long else record


_HANDLERS: weakref.WeakSet[AccountingCallbackHandler] = weakref.WeakSet()


@atexit.register
def _leases_back_at_exit() -> None:
    # Registered after hookwire._workers' exit hook (this module imports it first), so it
    # runs before it: the releases queued here are then written by that one drain, within
    # its one bound, with the rows queued before them.
    for handler in list(_HANDLERS):
        try:
            handler._leases.retire_all(1.0)
        except Exception:  # pragma: no cover - never spoil interpreter exit
            logger.exception("hookwire: giving budget leases back at exit failed")


def _noop_start(prompt: Any, **kwargs: Any) -> None:
    return None


async def _anoop_start(prompt: Any, **kwargs: Any) -> None:
    return None


_noop_start.__hookwire_noop__ = True  # type: ignore[attr-defined]
_anoop_start.__hookwire_noop__ = True  # type: ignore[attr-defined]


def _own_cost(response: Any) -> Decimal | None:
    """The cost a response carries, if the ledger can take it; else ``None`` (the call is then
    priced from its model): a negative or NaN cost would reopen or poison a budget."""
    cost = getattr(response, "cost", None)
    if cost is None or (type(cost) is Decimal and cost.is_finite() and 0 <= cost <= MAX_COST):
        return cost
    logger.warning(
        "hookwire: a response's cost %r is not an amount of money from 0 to %s; the call is "
        "priced from its model instead",
        cost,
        MAX_COST,
    )
    return None


def _identity(record: UsageRecord) -> Identity:
    return (record.user_id, record.org_id, record.correlation_id, record.request_id)


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

    ``check_timeout`` (seconds) bounds a budget check: a database that takes longer counts as
    unreachable (see ``fail_open``). ``unpriced_price`` (a ``pricing.ModelPrices``) is what a
    call to a model without a known price reserves at; ``None``: the dearest known prices,
    since its answer may be billed under another model's name.

    ``budget_lease`` (calls; ``0`` turns it off) lets a process reserve up to that many calls'
    worst case ahead, in one background round trip, and check its next calls against it
    without going to the database: a budget then costs a call no round trip. A lease is taken
    for budgets whose calls come back within ``LEASE_LIFE`` (never for a user seen once), sized
    by their rate (the calls that come in ``LEASE_LIFE`` at it, at least 2), and renewed while
    they keep coming. It is counted by every process's check as reserved, is granted only while
    the budget has room for ``LEASE_HEADROOM`` more leases (so near the limit every call is
    checked one by one, as without leases), serves calls for ``LEASE_LIFE`` second, and is
    given back once its calls have ended (or at ``flush``, ``close`` and exit). A process can
    so hold back up to one lease of a budget from other processes for about a second.

    Checks that go to the database at the same time (a burst of calls in one event loop, or
    from several threads on SQLite) are made together, in one transaction, each admitted or
    refused as it would be alone (``hookwire.stores.ledger.batching``).
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
        budget_lease: int = 64,
        check_timeout: float = 2.0,
        unpriced_price: pricing.ModelPrices | None = None,
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
        if (
            isinstance(check_timeout, bool)
            or not isinstance(check_timeout, (int, float))
            or not 0 < check_timeout < float("inf")
        ):
            raise ConfigurationError(
                f"check_timeout must be a positive number of seconds, not {check_timeout!r}"
            )
        if unpriced_price is not None and not isinstance(unpriced_price, pricing.ModelPrices):
            raise ConfigurationError(
                "unpriced_price must be a hookwire.pricing.ModelPrices, such as "
                "ModelPrices(input_mtok=Decimal('5'), output_mtok=Decimal('15')), or None"
            )
        #: Seconds a budget check may take before it counts as failed (see ``fail_open``).
        self.check_timeout = float(check_timeout)
        #: The prices reserved for a model without a known price (None: the dearest known).
        self.unpriced_price = unpriced_price
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
        self._queue = ledger_queue(self.store)
        self._pairing = RunPairing()
        # The model and max_tokens each checked call in flight reserved for, by run id.
        self._asked: dict[str, tuple[str | None, int]] = {}
        self._leases = BudgetLeases(
            self.store,
            self._queue.put,
            calls=budget_lease,
            ttl=self.reservation_ttl,
            name=self.name,
        )
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

    def _claims(self, run_id: str, prompt: Any, kwargs: Mapping[str, Any]) -> list[Claim]:
        keys = []
        for b in self.budgets:
            key = b.key or kwargs.get(SCOPES[b.scope]) or self._own(b.scope)
            if key is not None:  # else the call is for no user (org...): the budget does not apply
                keys.append((b, ledger_key(str(key))))
        if not keys:
            return []
        params = kwargs.get("invocation_params") or {}
        model = kwargs.get("model") or params.get("model") or self.model_name
        provider = kwargs.get("provider") or self.provider
        max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
            max_tokens = self.default_max_tokens
        # Every call reserves something: a model without a known price may still be billed
        # under a priced name (an Azure deployment, a router alias).
        amount = worst_case(model, prompt, max_tokens, provider, self.unpriced_price)
        asked = self._asked
        if len(asked) >= 10_000:
            # A call that never reported back (another thread may be removing it too).
            with contextlib.suppress(StopIteration, RuntimeError):
                asked.pop(next(iter(asked)), None)
        asked[run_id] = (model, max_tokens)
        return [Claim(b.scope, key, b.period, b.limit, amount, b.currency) for b, key in keys]

    def _own(self, scope: str) -> str | None:
        return {"user": self.user_id, "org": self.org_id, "agent": self.agent}[scope]

    # Two implementations of one check, so that neither dispatch path hops between threads or
    # event loops: sync dispatch calls on_llm_start in the caller's thread (a psycopg call on
    # PostgreSQL), async dispatch awaits aon_llm_start on the caller's loop (asyncpg there).

    def on_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        """Check the budgets and reserve the call's worst-case cost; raises ``BudgetExceeded``."""
        check = self._to_check(prompt, kwargs)
        if check is None:
            return
        run_id, claims = check
        try:
            try:
                self._reserve_sync(run_id, claims)
            except BudgetExceeded:
                if not self._may_settle():
                    raise
                # Calls that ended here still count at their worst case until their rows are
                # written: wait for those rows, then check again with what they really cost.
                self._queue.flush(self.settle_wait)
                self._reserve_sync(run_id, claims)
        except BudgetExceeded:
            raise
        except HookwireError as exc:
            self._unchecked(claims, exc)
            return
        self._checked(run_id, claims)

    async def aon_llm_start(self, prompt: Any, **kwargs: Any) -> None:
        """``on_llm_start`` for async dispatch: the same check, awaited on the caller's loop."""
        check = self._to_check(prompt, kwargs)
        if check is None:
            return
        run_id, claims = check
        try:
            try:
                await self._areserve(run_id, claims)
            except BudgetExceeded:
                if not self._may_settle():
                    raise
                await self._queue.settle(self.settle_wait)
                await self._areserve(run_id, claims)
        except BudgetExceeded:
            raise
        except HookwireError as exc:
            self._unchecked(claims, exc)
            return
        self._checked(run_id, claims)

    # The steps both checks share.

    def _reserve_sync(self, run_id: str, claims: Sequence[Claim]) -> None:
        self.store.reserve_sync(
            run_id, claims, ttl=self.reservation_ttl, timeout=self.check_timeout
        )

    async def _areserve(self, run_id: str, claims: Sequence[Claim]) -> None:
        await self.store.areserve(
            run_id, claims, ttl=self.reservation_ttl, timeout=self.check_timeout
        )

    def _to_check(self, prompt: Any, kwargs: Mapping[str, Any]) -> tuple[str, list[Claim]] | None:
        """The run id and claims of a call the database must check; ``None`` when no budget
        applies to it or this process's lease serves it."""
        run_id = kwargs.get("run_id") or new_id()
        claims = self._claims(run_id, prompt, kwargs)
        if not claims:
            return None
        if self.budget_lease and self._leases.take(run_id, claims):
            return None
        return run_id, claims

    def _may_settle(self) -> bool:
        """After a refused check: give back this process's leases (so that they do not refuse
        its own calls), and say whether waiting for the queued rows can change the answer."""
        self._leases.retire_all()
        return bool(self._queue.pending) and not self._queue.failing

    def _checked(self, run_id: str, claims: Sequence[Claim]) -> None:
        """A call checked one by one: take a lease for the next ones (after the check, so
        that the two do not queue for the same rows)."""
        if self.budget_lease:
            self._leases.take(run_id, claims, serve=False)

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
                cost=_own_cost(response),
                currency=getattr(response, "currency", None) or "USD",
                kwargs=kwargs,
                # No usage came: booked as the estimate's upper bound, marked as such.
                source=ESTIMATED if usage.estimated else "auto",
            )
        except InvalidUsageError:
            if self.budgets:
                self._asked.pop(run_id, None)
                if not (self._leases.covered and self._leases.ended(run_id)):
                    self._queue.put(run_id)
            raise
        self._queue.put(record)
        if self._asked:
            asked = self._asked.pop(run_id, None)
            if asked is not None:
                answered(asked[0], asked[1], record.completion_tokens)
        if self._leases.covered:
            self._leases.ended(run_id)
        if model:
            self.model_name = model
        if provider:
            self.provider = provider
        self._pairing.recorded(run_id, _identity(record))

    def on_embedding_end(self, response: EmbeddingResponse, **kwargs: Any) -> None:
        """Record an embedding call: its input tokens and their price (queued)."""
        self._queue.put(
            self._record(
                kwargs.get("run_id") or new_id(),
                response.usage,
                model=response.model or kwargs.get("model"),
                provider=response.provider or kwargs.get("provider"),
                cost=_own_cost(response),
                currency=response.currency,
                kwargs=kwargs,
                source="auto",
            )
        )

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        """The call failed: release its budget reservation (in the background)."""
        if self.budgets and kwargs.get("run_id"):
            run_id = str(kwargs["run_id"])
            self._asked.pop(run_id, None)
            if not (self._leases.covered and self._leases.ended(run_id)):
                self._queue.put(run_id)

    # -- by hand (the seed's API) -------------------------------------------------------------

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
        automatically in the caller's context (if not already paired; see ``manual``), else a
        new one; a run already in the ledger is
        not counted again. Returns the record the ledger holds for the run (for a run recorded
        before, the row stored then, not these figures; its ``cost`` is ``None`` if the
        model's price is unknown).

        Bad arguments change nothing and raise: token counts that are not whole numbers from 0
        to 10^12, or a ``cost`` that is not an amount from 0 to 1,000,000 (negative, NaN),
        ``InvalidUsageError``; ids and names that are not strings, or a ``run_id`` that is not
        1 to 64 characters, ``ConfigurationError``.
        """
        record = self._manual(
            output_tokens, prompt_tokens, agent_slug, run_id, cached_tokens, reasoning_tokens,
            model, provider, user_id, org_id, cost,
        )  # fmt: skip
        return await runner.run(self._stored(record))

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
        return runner.run_sync(self._stored(record))

    async def _stored(self, record: UsageRecord) -> UsageRecord:
        """Write ``record``; what the ledger holds for its run: ``record``, or the row already
        there when the run was recorded before (the ledger keeps the first)."""
        if await self.store.record([record]):
            return record
        rows = await self.store.records(run_id=record.run_id, limit=1)
        return rows[0] if rows else record

    def _manual(
        self,
        output_tokens: Any,
        prompt_tokens: Any,
        agent_slug: Any,
        run_id: Any,
        cached_tokens: Any,
        reasoning_tokens: Any,
        model: Any,
        provider: Any,
        user_id: Any,
        org_id: Any,
        cost: Any,
    ) -> UsageRecord:
        # Every argument is checked before the run is paired or anything is queued: a bad one
        # raises a named error and changes nothing.
        usage = manual_usage(output_tokens, prompt_tokens, cached_tokens, reasoning_tokens)
        amount = manual_cost(cost)
        run_id = manual_text("run_id", run_id, run_id=True)
        explicit = {
            "user_id": manual_text("user_id", user_id),
            "org_id": manual_text("org_id", org_id),
            "agent": manual_text("agent_slug", agent_slug),
        }
        model = manual_text("model", model) or self.model_name
        provider = manual_text("provider", provider) or self.provider
        # Built in the caller's thread, so that its request context (hookwire.trace /
        # request_context) is the one read: it fills in what the arguments do not say; the
        # handler's own ids come last.
        context = current_context()
        context.update({k: v for k, v in explicit.items() if v is not None})
        record = self._record(
            run_id or "",
            usage,
            model=model,
            provider=provider,
            cost=amount,
            currency="USD",
            kwargs=context,
            source="manual",
        )
        check_cost(record.cost)
        if run_id is None:
            run_id = self._pairing.pair(_identity(record)) or new_id()
            record = dataclasses.replace(record, run_id=run_id)
        return record

    # -- queries ------------------------------------------------------------------------------

    async def asummary(
        self,
        by: Sequence[str] | str = (),
        *,
        since: datetime | date | str | None = None,
        until: datetime | date | str | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """``summary`` for async code (it too waits for the rows still queued first, without
        blocking the event loop)."""
        await self._queue.aflush()
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
        """Rows queued for this handler's ledger and not yet written."""
        return self._queue.pending

    @property
    def dropped(self) -> int:
        """Usage rows of this handler's ledger that were lost (logged): refused by the
        database, or finding its queue full during an outage (``CallbackManager.stats()``)."""
        return self._queue.dropped

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every queued row is written (and the budget leases no call uses are
        given back); ``False`` if ``timeout`` ran out first."""
        self._leases.retire_all(10.0 if timeout is None else timeout)
        return self._queue.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (waiting up to ``timeout`` seconds). Rows the database still
        refuses after that are dropped and logged, and the ledger's queue stops retrying."""
        self._leases.retire_all(timeout)
        if not self._queue.flush(timeout):
            logger.warning(
                "hookwire: %s closed with %d usage row(s) not yet written",
                self.name,
                self._queue.pending,
            )
            self._queue.give_up(1.0)  # a write in progress fails, and gives its rows up
