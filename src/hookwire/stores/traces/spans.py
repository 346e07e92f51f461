"""Span rows from log records: how events become the trace store's ``spans``.

The trace store takes the records ``FileLogCallback`` writes (``hookwire.logschema``: one per
event, already redacted and with the content switches applied), so that a live handler and
``hookwire import LOG.jsonl`` make the same rows. :func:`spans_from_records` folds records
into *span patches*: dicts of ``spans`` columns (plus ``input`` and ``output``, the whole
content as JSON text, for ``span_contents``) that carry only what those records said.

A patch is merged into what is stored by column (:data:`FIRST`, :data:`ADDED`, the rest
last-known-wins), so the start and the end of a call may arrive in different batches, in any
number of writes:

- a ``*_start`` opens a span (status ``running``) with its input; its ``*_end`` / ``*_error``
  closes it with its output or error, usage, cost, latency and time to first token;
- a memory operation, an ``error`` and a ``budget_exceeded`` are spans of no duration;
- a ``retry`` is a span of its own under the call it retries (``<run id>:retry:<attempt>``)
  and adds one to that call's ``retries``;
- streamed tokens make no span (the call's ``ttft_ms`` says when the first came).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson

__all__ = [
    "ADDED",
    "CONTENT",
    "FIRST",
    "KINDS",
    "PREVIEW_CHARS",
    "STATUSES",
    "merge",
    "preview",
    "span_from_record",
    "spans_from_records",
]

#: Characters kept of an input or output in the ``*_preview`` columns.
PREVIEW_CHARS: Final = 200
#: What a span can be.
KINDS: Final = ("run", "llm", "embedding", "tool", "memory", "retry", "error", "event")
#: A span's status: ``running`` until its end is recorded.
STATUSES: Final = ("running", "ok", "error")
#: Columns that keep their first known value (what the start said).
FIRST: Final = frozenset({"trace_id", "parent_id", "kind", "name", "started_at", "depth"})
#: Columns that are added up across patches.
ADDED: Final = frozenset({"retries"})
#: The keys of a patch that go to ``span_contents``.
CONTENT: Final = ("input", "output")

_UTC = timezone.utc
_OPENS: Final = {"run_start": "run", "llm_start": "llm", "embedding_start": "embedding"}
_OPENS_TOOL: Final = "tool_start"
_CLOSES: Final = {
    "run_end": "run",
    "llm_end": "llm",
    "llm_error": "llm",
    "embedding_end": "embedding",
    "embedding_error": "embedding",
    "tool_end": "tool",
    "tool_error": "tool",
}
_CONTEXT: Final = ("user_id", "org_id", "conversation_id", "agent")
_SKIPPED: Final = frozenset({"llm_new_token"})


def preview(value: Any) -> str | None:
    """A short one-line text of an input or output, for lists (``None`` for nothing)."""
    if value is None:
        return None
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        # chat messages: the last one is what this call was about
        value = value[-1].get("content", value[-1])
    if isinstance(value, dict) and "content" in value:
        value = value["content"]
    text = value if isinstance(value, str) else _json(value)
    text = " ".join(text.split())
    if len(text) > PREVIEW_CHARS:
        text = text[: PREVIEW_CHARS - 1] + "…"
    return text


def _time(ts: Any) -> datetime:
    return datetime.fromtimestamp(float(ts), _UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _cost(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        cost = Decimal(str(value))
    except InvalidOperation:
        return None
    return cost if cost.is_finite() and cost >= 0 else None


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:  # an integer beyond 64 bits (a record not read from a log line)
        return json.dumps(value, default=str)


def _usage(patch: dict[str, Any], usage: Any) -> None:
    if not isinstance(usage, Mapping):
        return
    for column, key in (
        ("input_tokens", "prompt_tokens"),
        ("output_tokens", "completion_tokens"),
        ("cached_tokens", "cached_tokens"),
        ("reasoning_tokens", "reasoning_tokens"),
    ):
        n = _count(usage.get(key))
        if n is not None:
            patch[column] = n


def _error_type(error: Any) -> str | None:
    if isinstance(error, Mapping):
        kind = error.get("type")
        return str(kind)[:255] if kind is not None else None
    return None if error is None else "Error"


def _base(rec: Mapping[str, Any], span_id: str, kind: str) -> dict[str, Any]:
    """What every patch of a record carries: the ids, the context, when."""
    ts = rec["timestamp"]
    patch: dict[str, Any] = {
        "span_id": span_id,
        "trace_id": str(rec.get("trace_id") or rec["run_id"]),
        "kind": kind,
        "started_at": _time(ts),
    }
    parent = rec.get("parent_run_id")
    if parent:
        patch["parent_id"] = str(parent)
    depth = _count(rec.get("depth"))
    if depth is not None:
        patch["depth"] = depth
    for key in _CONTEXT:
        value = rec.get(key)
        if value is not None:
            patch[key] = str(value)
    for key in ("model", "provider"):
        value = rec.get(key)
        if isinstance(value, str) and value:
            patch[key] = value
    return patch


def _set_content(patch: dict[str, Any], side: str, value: Any, present: bool) -> None:
    if present:
        patch[side] = _json(value)
        patch[f"{side}_preview"] = preview(value)


def span_from_record(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The span patches of one log record (see the module); none for a streamed token."""
    event = rec.get("event")
    if not isinstance(event, str) or event in _SKIPPED:
        return []
    run_id = str(rec["run_id"])
    data = rec.get("data") or {}
    if not isinstance(data, Mapping):
        data = {}
    if event in _OPENS or event == _OPENS_TOOL:
        kind = "tool" if event == _OPENS_TOOL else _OPENS[event]
        patch = _base(rec, run_id, kind)
        patch["status"] = "running"
        name = rec.get("name") or (data.get("tool_name") if kind == "tool" else rec.get("model"))
        if name:
            patch["name"] = str(name)[:255]
        key = {"run": "input", "llm": "prompt", "embedding": "input", "tool": "tool_input"}[kind]
        _set_content(patch, "input", data.get(key), key in data)
        return [patch]
    if event in _CLOSES:
        return [_close(rec, run_id, event, data)]
    if event in ("memory_store", "memory_recall"):
        patch = _base(rec, run_id, "memory")
        patch.update(status="ok", ended_at=patch["started_at"], name=event.partition("_")[2])
        if event == "memory_store":
            _set_content(patch, "input", data.get("content"), "content" in data)
        else:
            _set_content(patch, "input", data.get("query"), "query" in data)
            _set_content(patch, "output", data.get("results"), "results" in data)
        return [patch]
    if event == "retry":
        attempt = data.get("attempt")
        retry = _base(rec, f"{run_id}:retry:{attempt}", "retry")
        retry.update(status="error", ended_at=retry["started_at"], parent_id=run_id)
        retry["name"] = f"attempt {attempt} of {data.get('max_attempts')}"
        retry["error_type"] = _error_type(data.get("error"))
        _set_content(retry, "output", data.get("error"), "error" in data)
        # The call retried: its row gains one retry (its own start says the rest).
        call = _base(rec, run_id, "llm")
        call["retries"] = 1
        return [call, retry]
    # error, budget_exceeded, and hooks declared later: an instant span
    kind = "error" if event in ("error", "budget_exceeded") else "event"
    patch = _base(rec, run_id, kind)
    patch["ended_at"] = patch["started_at"]
    patch["name"] = event
    error = data.get("error")
    patch["status"] = "error" if error is not None or kind == "error" else "ok"
    if error is not None:
        patch["error_type"] = _error_type(error)
    _set_content(patch, "output", error if error is not None else data, bool(data))
    return [patch]


def _close(
    rec: Mapping[str, Any], run_id: str, event: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    kind = _CLOSES[event]
    patch = _base(rec, run_id, kind)
    end = patch["started_at"]
    patch["ended_at"] = end
    latency = _number(rec.get("latency_ms"))
    if latency is not None:
        patch["latency_ms"] = latency
        # the start's own time wins where it was recorded (FIRST); this serves an end alone
        patch["started_at"] = datetime.fromtimestamp(float(rec["timestamp"]) - latency / 1000, _UTC)
    ttft = _number(rec.get("ttft_ms"))
    if ttft is not None:
        patch["ttft_ms"] = ttft
    if kind == "tool" and data.get("tool_name"):
        patch["name"] = str(data["tool_name"])[:255]
    if event.endswith("_error") or rec.get("error") is not None:
        error = data.get("error", rec.get("error"))
        patch["status"] = "error"
        patch["error_type"] = _error_type(error)
        _set_content(patch, "output", error, error is not None)
    else:
        patch["status"] = "ok"
        key = {"run": "output", "llm": "response", "embedding": "response", "tool": "tool_output"}[
            kind
        ]
        value = data.get(key)
        if kind == "llm" and isinstance(value, Mapping):
            _usage(patch, value.get("usage"))
            cost = _cost(value.get("cost"))
            if cost is not None:
                patch["cost"] = cost
                patch["currency"] = str(value.get("currency") or "USD")[:3]
            for k in ("model", "provider"):
                if isinstance(value.get(k), str) and value[k] and k not in patch:
                    patch[k] = value[k]
            shown = value.get("content") if "content" in value else None
            _set_content(patch, "output", value if shown is None else shown, "content" in value)
        else:
            _set_content(patch, "output", value, key in data)
    _usage(patch, rec.get("usage"))
    cost = _cost(rec.get("cost"))
    if cost is not None:
        patch["cost"] = cost
        patch.setdefault("currency", "USD")
    return patch


def merge(into: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Merge ``patch`` into ``into`` (two patches of one span), as the store merges rows."""
    for key, value in patch.items():
        if value is None:
            continue
        if key in ADDED:
            into[key] = into.get(key, 0) + value
        elif (
            key in FIRST
            or key in ("input", "input_preview")
            or (key == "status" and value == "running")
        ):
            into.setdefault(key, value)
        else:
            into[key] = value


def spans_from_records(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The span patches of ``records``, one per span, in the order the spans first appear."""
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        for patch in span_from_record(rec):
            found = out.get(patch["span_id"])
            if found is None:
                out[patch["span_id"]] = patch
            else:
                merge(found, patch)
    return list(out.values())
