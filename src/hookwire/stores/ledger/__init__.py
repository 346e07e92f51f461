"""The usage ledger: one row per LLM call, running totals, and budget reservations; the store
behind ``AccountingCallbackHandler`` and ``hookwire costs``.

:class:`UsageLedger` (in :mod:`.api`) declares what a ledger does; ``UsageLedger(url)`` gives
the implementation registered below for the URL's backend: :class:`SQLiteUsageLedger`
(:mod:`.sqlite`) or :class:`PostgresUsageLedger` (:mod:`.postgres`), both built on
:class:`SQLUsageLedger` (:mod:`.sql`, what they share). The other modules: :mod:`.records`
(the rows and keys), :mod:`.budgets` (checks and reservations), :mod:`.connections` (the
connections of PostgreSQL budget checks).

- ``record`` writes rows in one transaction, idempotent by ``run_id`` (a call is never
  counted twice), adds them to ``usage_totals`` and settles their runs' reservations.
- ``reserve`` checks budgets and reserves a call's worst-case cost, atomically across
  processes; ``reserve_sync`` and ``areserve`` do the same from where the caller is.
- ``summary`` groups the ledger by user, org, agent, model, provider, day or month.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..._lazy import LazyNames
from .records import (
    ESTIMATED,
    GROUP_KEYS,
    MAX_COST,
    MAX_TOKENS,
    PERIODS,
    SCOPES,
    Claim,
    UsageRecord,
    ledger_key,
    period_start,
)

if TYPE_CHECKING:
    from .api import UsageLedger
    from .api import backends as backends  # not in __all__: the registry, for plug-ins
    from .connections import close_sync_budget_connections, dispose_budget_pools
    from .postgres import PostgresUsageLedger
    from .sql import SQLUsageLedger
    from .sqlite import SQLiteUsageLedger

__all__ = [
    "ESTIMATED",
    "GROUP_KEYS",
    "MAX_COST",
    "MAX_TOKENS",
    "PERIODS",
    "SCOPES",
    "Claim",
    "PostgresUsageLedger",
    "SQLUsageLedger",
    "SQLiteUsageLedger",
    "UsageLedger",
    "UsageRecord",
    "close_sync_budget_connections",
    "dispose_budget_pools",
    "ledger_key",
    "period_start",
]

# The ledger's classes are imported when first named (they need SQLAlchemy): the records and
# the plan of a summary (``.rollups``) are read without it by ``hookwire costs`` on SQLite.
_LAZY = LazyNames(
    __name__,
    {
        "UsageLedger": ".api",
        "backends": ".api",
        "close_sync_budget_connections": ".connections",
        "dispose_budget_pools": ".connections",
        "PostgresUsageLedger": ".postgres",
        "SQLUsageLedger": ".sql",
        "SQLiteUsageLedger": ".sqlite",
    },
)


def __getattr__(name: str) -> Any:
    return _LAZY(name)
