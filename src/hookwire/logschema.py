"""The JSON Lines log schema shared by ``FileLogCallback`` and ``hookwire report``.

One event is one line: a JSON object followed by ``\\n``. Schema version 1::

    {"v": 1, "event": "llm_end", "run_id": "0193...", "timestamp": 1732370000.123,
     "parent_run_id": "0193...", "trace_id": "0193...", "depth": 1,
     "model": "gpt-4o", "provider": "openai", "tags": ["prod"], "metadata": {...},
     "correlation_id": "...", "request_id": "...", "user_id": "...", "org_id": "...",
     "conversation_id": "...", "agent": "...",
     "latency_ms": 812.4, "attempts": 1, "stream": false,
     "data": {"response": {"content": "...", "usage": {...}, "cost": "0.0012", ...}}}

- ``v`` (int): the schema version. Readers accept every version up to their own and refuse
  newer ones with a message saying to upgrade.
- ``event`` (str): the name of the hook's record, its hook without the ``on_`` prefix
  (``llm_end`` for ``on_llm_end``; ``EVENT_NAMES`` has them all, a hook declared with
  ``hookwire.events.declare_hook`` included).
- ``timestamp`` (float): when the event was dispatched, seconds since the Unix epoch.
- ``run_id`` (str) always; the other ids and the request context only when set; then the
  event's own keywords (``latency_ms``, ``ttft_ms``, ``attempt``, ``index``, ``usage``,
  ``cost``, ``stage``, ``invocation_params``, ...), exactly as the hook received them.
- ``data`` (object): the hook's positional arguments by name (``prompt``, ``response``,
  ``token``, ``tool_name`` and ``tool_input``, ``error``, ...). Those its ``HookSpec`` names in
  ``prompts`` / ``responses`` are left out when prompts / responses are not logged; a
  ``response`` then keeps everything but its ``content``.

Values are written as JSON: an ``LLMResponse`` or ``Usage`` as an object of its fields, a
``Decimal`` (a cost) as a string (exact), a datetime as ISO 8601, an exception as
``{"type": ..., "message": ...}``, and anything else as its ``str()``. ``v``, ``event`` and
``data`` are reserved: a keyword of that name is not logged.

Secrets are redacted from every line by ``hookwire.redaction.Redactor`` (re-exported here):
API keys, bearer tokens, ``Authorization`` values, passwords in URLs and the values of keys
named like ``api_key`` or ``password``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any, Final

import orjson

from .errors import LogFormatError
from .events import (
    HOOKS,
    EmbeddingResponse,
    Event,
    HookSpec,
    LLMResponse,
    Usage,
    on_hook_declared,
)
from .redaction import REDACTED, Redactor, default_redactor

__all__ = [
    "EVENT_NAMES",
    "IMMUTABLE_TYPES",
    "REDACTED",
    "SCHEMA_VERSION",
    "Redactor",
    "default_redactor",
    "dumps_record",
    "error_to_dict",
    "json_default",
    "line_from_call",
    "line_from_parts",
    "parse_line",
    "record_from_call",
    "response_to_dict",
    "snapshot",
    "snapshot_parts",
    "to_line",
    "to_record",
]

#: The version of the line format written by this hookwire.
SCHEMA_VERSION: Final = 1

#: ``event`` values, by hook name (kept in step with ``hookwire.events.HOOKS``).
EVENT_NAMES: Final[dict[str, str]] = {}


def error_to_dict(error: BaseException) -> dict[str, Any]:
    """An exception as ``{"type": ..., "message": ...}`` (plus ``status_code`` when known)."""
    out: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    status = getattr(error, "status_code", None)
    if isinstance(status, int):
        out["status_code"] = status
    return out


def json_default(value: Any) -> Any:
    """orjson's ``default``: how values that are not JSON types are written."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseException):
        return error_to_dict(value)
    if isinstance(value, EmbeddingResponse):
        return value.to_dict()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


_DUMPS_OPTIONS: Final = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE
_dumps: Final = orjson.dumps  # a global, not an attribute lookup, per line


def response_to_dict(r: LLMResponse, content: bool = True) -> dict[str, Any]:
    """An ``LLMResponse`` as written in the log (``LLMResponse.to_dict()``, built faster)."""
    # Built inline (no comprehension frame for the usual empty tool_calls): this runs on the
    # app thread for every LLM call. orjson's own dataclass support was measured slower
    # (``Decimal`` goes through ``default``) and would write unknown token counts as null,
    # which the schema leaves out.
    usage = r.usage.to_dict()
    cost = r.cost
    calls = r.tool_calls
    out: dict[str, Any] = {
        "content": r.content,
        "usage": usage,
        "model": r.model,
        "created_at": r.created_at,
        "finish_reason": r.finish_reason,
        "tool_calls": [{"id": t.id, "name": t.name, "arguments": t.arguments} for t in calls]
        if calls
        else [],
        "provider": r.provider,
        "id": r.id,
        "cost": None if cost is None else str(cost),
        "currency": r.currency,
    }
    if r.response_metadata:
        out["response_metadata"] = dict(r.response_metadata)
    if not content:
        del out["content"]
    return out


def record_from_call(
    hook: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    include_prompts: bool = True,
    include_responses: bool = True,
) -> dict[str, Any]:
    """The log record of one hook call, as ``FileLogCallback`` writes it (before JSON).

    ``include_prompts=False`` leaves out prompts, run inputs, tool inputs, memory contents
    and queries; ``include_responses=False`` leaves out answer text, run outputs, streamed
    tokens, tool outputs and memory results (usage, cost and timings stay).
    """
    name, argnames = _NAMES[hook], _ARGNAMES[hook]
    rec = {"v": SCHEMA_VERSION, "event": name, **kwargs}
    if len(rec) != len(kwargs) + 2:
        rec["v"] = SCHEMA_VERSION
        rec["event"] = name
    # The few non-JSON values every LLM event carries are converted here, not through
    # orjson's ``default`` hook: a Python call per value from inside orjson costs more.
    if "usage" in rec and type(rec["usage"]) is Usage:
        rec["usage"] = rec["usage"].to_dict()
    if "cost" in rec and type(rec["cost"]) is Decimal:
        rec["cost"] = str(rec["cost"])
    data = dict(zip(argnames, args, strict=False))
    if len(args) == 1 and type(args[0]) is LLMResponse:
        data[argnames[0]] = response_to_dict(args[0], include_responses)
    if not (include_prompts and include_responses):
        _hide(data, hook, args, include_prompts, include_responses)
    rec["data"] = data
    return rec


def _hide(
    data: dict[str, Any], hook: str, args: tuple[Any, ...], prompts: bool, responses: bool
) -> None:
    """Leave out of ``data`` the content the switches turn off (see ``HookSpec``)."""
    prompt_args, response_args = _CONTENT[hook]
    if not prompts:
        for k in prompt_args:
            data.pop(k, None)
    # A lone LLMResponse stays: response_to_dict already left its content out.
    if not responses and not (len(args) == 1 and type(args[0]) is LLMResponse):
        for k in response_args:
            data.pop(k, None)


# Per hook, derived from hookwire.events.HOOKS (and kept in step by _index): the payload's
# names, the ``event`` value, the line's fixed head, and the arguments holding content.
_ARGNAMES: Final[dict[str, tuple[str, ...]]] = {}
_NAMES: Final[dict[str, str]] = {}
_HEADS: Final[dict[str, bytes]] = {}
_CONTENT: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {}
_EMPTY: Final[dict[str, Any]] = {}
_TABLES: Final = (EVENT_NAMES, _ARGNAMES, _NAMES, _HEADS, _CONTENT)


def _index(spec: HookSpec) -> None:
    hook = spec.name
    if hook not in HOOKS:  # removed
        for table in _TABLES:
            table.pop(hook, None)
        return
    name = spec.event.name
    EVENT_NAMES[hook] = _NAMES[hook] = name
    _ARGNAMES[hook] = spec.args
    _HEADS[hook] = b'{"v":%d,"event":"%s",' % (SCHEMA_VERSION, name.encode())
    _CONTENT[hook] = (spec.prompts, spec.responses)


for _spec in HOOKS.values():
    _index(_spec)
on_hook_declared(_index)


def line_from_parts(
    hook: str,
    args: tuple[Any, ...],
    run_id: Any,
    timestamp: Any,
    ctx: Mapping[str, Any],
    kw: dict[str, Any],
    model: Any = None,
    provider: Any = None,
    include_prompts: bool = True,
    include_responses: bool = True,
) -> bytes:
    """One log line (JSON and ``\\n``, not yet redacted) from what ``CallbackManager`` has.

    The record is ``v``, ``event``, ``run_id``, ``timestamp``, the run context ``ctx``, the
    keywords ``kw`` (which win over the context), ``model``, ``provider`` (when not None) and
    ``data``: what a handler's hook receives, in the same order. ``ctx`` and ``kw`` are only
    read. With ``run_id`` None, ``kw`` is the whole record (a hook called directly, with the
    ids among its keywords) and is used up: the line is serialised from it.
    """
    argnames = _ARGNAMES[hook]
    n = len(args)
    if n == 1:
        value = args[0]
        if type(value) is LLMResponse:
            value = response_to_dict(value, include_responses)
        data = {argnames[0]: value}
    elif n == 2 and len(argnames) >= 2:  # a literal: dict(zip(...)) costs four times more
        data = {argnames[0]: args[0], argnames[1]: args[1]}
    else:
        data = dict(zip(argnames, args, strict=False))
    if not (include_prompts and include_responses):
        _hide(data, hook, args, include_prompts, include_responses)
    if run_id is None:
        rec = kw
        head = _HEADS[hook]
        if "v" in rec or "event" in rec:  # reserved: the line's own
            rec.pop("v", None)
            rec.pop("event", None)
    else:
        # One new dict for the whole record, "v" and "event" first: no bytes to splice.
        name = _NAMES[hook]
        rec = {
            "v": SCHEMA_VERSION,
            "event": name,
            "run_id": run_id,
            "timestamp": timestamp,
            **ctx,
            **kw,
        }
        if kw and ("v" in kw or "event" in kw):  # reserved: the line's own
            rec["v"] = SCHEMA_VERSION
            rec["event"] = name
        head = b""
        if model is not None:
            rec["model"] = model
        if provider is not None:
            rec["provider"] = provider
    if "usage" in rec and type(rec["usage"]) is Usage:
        rec["usage"] = rec["usage"].to_dict()
    rec["data"] = data
    try:
        body = _dumps(rec, default=json_default, option=_NEWLINE)
    except TypeError:  # keys that are not strings, integers too big for JSON, ...
        body = orjson.dumps(_plain(rec), default=json_default, option=_DUMPS_OPTIONS)
    if head:
        # Splice the fixed head in front of the serialised keywords: no new dict per event.
        return head + body[1:]
    return body


#: Types whose values cannot change once made (``LLMResponse`` and ``Usage`` are frozen
#: dataclasses of such values): an event holding only these may be serialised later and still
#: be logged as it was when emitted.
IMMUTABLE_TYPES: Final[frozenset[type]] = frozenset(
    {str, int, float, bool, type(None), Decimal, LLMResponse, Usage}
)
_immutable: Final = IMMUTABLE_TYPES.issuperset
_Fragment: Final = orjson.Fragment


def snapshot(value: Any) -> Any:
    """``value`` as it is now, for a line made later (on another thread): a value of
    ``IMMUTABLE_TYPES`` itself, anything else its JSON (an ``orjson.Fragment``, embedded as
    is), so that a change the app makes after the event does not reach the line. The line
    made with it is the one made with ``value``, byte for byte."""
    if type(value) in IMMUTABLE_TYPES:
        return value
    try:
        return _Fragment(_dumps(value, default=json_default))
    except TypeError:  # as line_from_parts falls back for the whole record
        return _Fragment(
            orjson.dumps(_plain(value), default=json_default, option=orjson.OPT_NON_STR_KEYS)
        )


def snapshot_parts(
    args: tuple[Any, ...], kw: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kw`` with every value ``snapshot`` (``kw`` is only read)."""
    if not _immutable(map(type, args)):
        args = tuple(map(snapshot, args))
    if kw and not _immutable(map(type, kw.values())):
        kw = {k: snapshot(v) for k, v in kw.items()}
    return args, kw


def line_from_call(
    hook: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    include_prompts: bool = True,
    include_responses: bool = True,
) -> bytes:
    """One log line (JSON and ``\\n``, not yet redacted) for a hook call, fast.

    ``kwargs`` is used up: the line is serialised from it directly (it gains ``data``), which
    is what makes this path cheap; pass a dict you own (a hook's ``**kwargs`` is one).
    """
    return line_from_parts(
        hook, args, None, None, _EMPTY, kwargs, None, None, include_prompts, include_responses
    )


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value)
    return value


def dumps_record(record: Mapping[str, Any]) -> bytes:
    """A record as one JSON line (with its newline); secrets are not yet redacted.

    Integers too big for JSON's 64 bits are written as strings, as ``FileLogCallback`` does."""
    try:
        return orjson.dumps(record, default=json_default, option=_DUMPS_OPTIONS)
    except TypeError:  # integers too big for JSON, ...
        return orjson.dumps(_plain(record), default=json_default, option=_DUMPS_OPTIONS)


def to_record(
    event: Event, *, include_prompts: bool = True, include_responses: bool = True
) -> dict[str, Any]:
    """The log record of a typed event (``hookwire.events``), before JSON."""
    return record_from_call(
        event.hook,
        tuple(event.payload().values()),
        event.kwargs(),
        include_prompts=include_prompts,
        include_responses=include_responses,
    )


def to_line(
    event: Event,
    *,
    include_prompts: bool = True,
    include_responses: bool = True,
    redactor: Redactor | None = None,
) -> bytes:
    """One log line for ``event``: UTF-8 JSON ending in ``\\n``, secrets redacted."""
    red = redactor or default_redactor()
    line = line_from_call(
        event.hook,
        tuple(event.payload().values()),
        event.kwargs(),
        include_prompts=include_prompts,
        include_responses=include_responses,
    )
    if red.walks_values:
        line = dumps_record(red.walk(orjson.loads(line)))
    return red.json_bytes(line)


def parse_line(line: bytes | str) -> dict[str, Any]:
    """Parse and check one log line; raises ``LogFormatError`` saying what is wrong.

    Accepts lines of every schema version up to ``SCHEMA_VERSION``. The trailing newline is
    optional.
    """
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise LogFormatError(f"not valid JSON ({exc}); the line may be cut or corrupted") from None
    if not isinstance(rec, dict):
        raise LogFormatError(
            f"a log line must be a JSON object, not {type(rec).__name__}; "
            "is this a hookwire JSONL log?"
        )
    v = rec.get("v")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise LogFormatError('the line has no schema version ("v"); is this a hookwire JSONL log?')
    if v > SCHEMA_VERSION:
        raise LogFormatError(
            f"the line has schema version {v}, newer than this hookwire reads "
            f"({SCHEMA_VERSION}); upgrade hookwire to read it"
        )
    event = rec.get("event")
    if not isinstance(event, str) or not event:
        raise LogFormatError('the line has no "event" name')
    ts = rec.get("timestamp")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        raise LogFormatError(f'the line\'s "timestamp" must be a number of seconds, not {ts!r}')
    if not isinstance(rec.get("run_id"), str):
        raise LogFormatError('the line has no "run_id"')
    data = rec.get("data", {})
    if not isinstance(data, dict):
        raise LogFormatError('the line\'s "data" must be a JSON object')
    return rec
