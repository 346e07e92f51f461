"""The ownership rule on the write path: which messages of a group may be stored.

A message may be stored when its conversation belongs to the caller's owner, its parent is a
message of the same conversation, and its id is new. The owners of conversations and the
conversations of messages never change, so :class:`OwnerCache` remembers them and steady
writing needs no lookups; the write itself re-checks the owner (see the backends), and a
stale entry makes the group retry with fresh lookups.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..._lru import LRU
from ...errors import InvalidInputError, ParentMessageError
from .batching import Pending
from .validation import not_found

__all__ = [
    "CACHE_LIMIT",
    "OwnerCache",
    "OwnerRow",
    "Row",
    "StaleCacheError",
    "Touch",
    "owner_of",
    "plan",
]

#: A message row to insert (the columns of ``MESSAGE_COLUMNS``).
Row = dict[str, Any]
#: A conversation a group touches: its id, the state to set (or ``None``), its owner row, and
#: how many of the group's messages it gets (added to its ``message_count``).
Touch = tuple[str, str | None, Any, int]


class StaleCacheError(Exception):
    """A cached conversation owner no longer matches the database."""


#: How many owners, and how many message parents, the cache keeps: the most recently used.
CACHE_LIMIT = 50_000


class OwnerCache:
    """Owners of conversations and conversations of messages this process has seen.

    Both never change, so steady writing needs no lookups. A cached entry can only go stale
    when another process deletes the row: the write then fails a check (the owner-checking
    update, or a foreign key) and the group is retried with fresh lookups.
    """

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self.owners: LRU[str, Any] = LRU(limit)
        self.parents: LRU[str, str] = LRU(limit)

    def clear(self) -> None:
        """Forget everything (after a failed write: something may be stale)."""
        self.owners.clear()
        self.parents.clear()

    def known(
        self, batch: Sequence[Pending], trust: bool
    ) -> tuple[dict[str, Any], list[str], dict[str, str], list[str], list[str]]:
        """What the cache knows of ``batch`` (nothing unless ``trust``): the owners, the
        conversations to look up, the parents, the parents to look up, and the explicit ids
        to check."""
        conv_ids = {p.row["conversation_id"] for p in batch}
        wanted = {p.row["parent_message_id"] for p in batch} - {None}
        owners: dict[str, Any] = {}
        parents: dict[str, str] = {}
        if trust:
            for cid in conv_ids:
                hit = self.owners.get(cid)
                if hit is not None:
                    owners[cid] = hit
            for mid in wanted:
                hit_c = self.parents.get(mid)
                if hit_c is not None:
                    parents[mid] = hit_c
        explicit = [p.row["id"] for p in batch if p.explicit_id]
        return (
            owners,
            sorted(conv_ids - owners.keys()),
            parents,
            sorted(wanted - parents.keys()),
            explicit,
        )

    def learn(
        self, owners: dict[str, Any], results: list[tuple[Pending, str | BaseException]]
    ) -> None:
        """Remember the owners looked up and the ids of the messages just stored."""
        for cid, owner in owners.items():
            self.owners.put(cid, owner)
        for p, outcome in results:
            if not isinstance(outcome, BaseException) and not p.explicit_id:
                # generated ids are unique: only a deletion can make this stale
                self.parents.put(outcome, p.row["conversation_id"])

    def forget(self, conversation_id: str) -> None:
        """Forget a conversation's owner (it is being deleted)."""
        self.owners.pop(conversation_id)


def plan(
    batch: Sequence[Pending],
    owners: dict[str, Any],
    parents: dict[str, str],
    taken: set[str],
    now: _dt.datetime,
) -> tuple[
    list[tuple[Pending, str | BaseException]],
    list[Row],
    list[Touch],
]:
    """Each message's outcome, the rows to insert, and the conversations to touch. Called
    inside the group's transaction, right before its insert: the messages are taken into it
    here (a message its caller withdrew is left out)."""
    results: list[tuple[Pending, str | BaseException]] = []
    rows: list[dict[str, Any]] = []
    touched: dict[str, str | None] = {}
    added: dict[str, int] = {}
    for p in batch:
        if not p.take():
            continue  # its caller withdrew it: not written, and nobody waits for an outcome
        outcome = _admit(p, owners, parents, taken)
        results.append((p, outcome))
        if isinstance(outcome, BaseException):
            continue
        row = p.row
        cid = row["conversation_id"]
        taken.add(row["id"])
        parents[row["id"]] = cid
        row["created_at"] = now
        rows.append(row)
        added[cid] = added.get(cid, 0) + 1
        if p.state is not None or cid not in touched:
            touched[cid] = p.state if p.state is not None else touched.get(cid)
    items = [(cid, st, owners[cid], added[cid]) for cid, st in sorted(touched.items())]
    return results, rows, items


def _admit(
    p: Pending, owners: dict[str, Any], parents: dict[str, str], taken: set[str]
) -> str | BaseException:
    """The message's id if it may be stored, else the error its caller gets."""
    row = p.row
    cid = row["conversation_id"]
    found = owners.get(cid)
    if found is None or (p.owner is not None and not p.owner.sees(found)):
        return not_found(cid)
    parent = row["parent_message_id"]
    if parent is not None and parents.get(parent) != cid:
        return ParentMessageError(
            f"parent message {parent!r} is not a message of conversation {cid!r}; pass the id "
            "send_message returned for a message of this conversation, or None"
        )
    if row["id"] in taken:
        return InvalidInputError(
            f"a message with id {row['id']!r} already exists; leave message_id out to get a new one"
        )
    return str(row["id"])


@dataclass(frozen=True, slots=True)
class OwnerRow:
    """A conversation's id and owner columns, as the write path looks them up."""

    id: str
    realm: str
    org_id: str
    user_id: str
    is_anonymous: bool


def owner_of(row: Sequence[Any]) -> OwnerRow:
    """The owner of a conversation row in ``CONVERSATION_FIELDS`` order."""
    return OwnerRow(row[0], row[3], row[4], row[5], bool(row[6]))
