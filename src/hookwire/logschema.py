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

Secrets are redacted from every line (``Redactor``): API keys (``sk-...``, AWS, GitHub,
Slack, Google, Stripe and Hugging Face key formats), ``Bearer``/``Basic``/``Token``
credentials, passwords in URLs (``scheme://user:password@host``) and the values of keys named
like ``api_key``, ``password``, ``secret``, ``access_token`` or ``authorization``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any, Final

import orjson

from .errors import ConfigurationError, LogFormatError
from .events import (
    HOOKS,
    EmbeddingResponse,
    Event,
    HookSpec,
    LLMResponse,
    Usage,
    on_hook_declared,
)

__all__ = [
    "EVENT_NAMES",
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
    "to_line",
    "to_record",
]

#: The version of the line format written by this hookwire.
SCHEMA_VERSION: Final = 1

#: ``event`` values, by hook name (kept in step with ``hookwire.events.HOOKS``).
EVENT_NAMES: Final[dict[str, str]] = {}

#: What a redacted secret is replaced with.
REDACTED: Final = "[REDACTED]"

# How redaction finds secrets fast: one Aho-Corasick scan (in Rust, without the GIL) looks for
# the literals every secret starts with or is named by; almost every batch has none and is
# written untouched. At each hit, one small anchored pattern decides whether a secret follows
# and where it ends. Every replaced span is made of characters that cannot be a quote, a
# backslash or a newline, so redacting JSON text never breaks or joins lines.
_VALUE_AFTER_KEY = re.compile(
    rb'[A-Za-z_\-]*(?:\\?")?[ \t]*[:=][ \t]*(?:\\?")?'
    rb"(?!\[REDACTED\])(?!(?i:bearer|basic|token)[ \t])([^\"\\\s,&;}]+)"
)
# A credential, unlike a word of prose, has a digit, or "=" padding, or several capitals in a
# long run of letters (base64).
_CREDENTIAL = re.compile(
    rb"[ \t]*(?=[A-Za-z._~+/\-]*[0-9]|[A-Za-z0-9._~+/\-]{8,}=|"
    rb"(?=[A-Za-z0-9._~+/\-]{12})(?:[a-z._~+/\-]*[A-Z]){2})([A-Za-z0-9._~+/\-]{8,}=*)"
)
_URL_PASSWORD = re.compile(rb'[^:/@\s"\\]*:([^@/\s"\\]+)@')
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_KEY_PREFIXES = (b"api_", b"api-", b"api", b"private_", b"private-", b"x-api-")

# (literals, kind, pattern matched right after the literal)
_RULES: Final[tuple[tuple[tuple[str, ...], str, re.Pattern[bytes]], ...]] = (
    (
        tuple(
            v + " " for w in ("bearer", "basic", "token") for v in (w, w.capitalize(), w.upper())
        ),
        "credential",
        _CREDENTIAL,
    ),
    (("://",), "url", _URL_PASSWORD),
    (("key", "Key", "KEY"), "apikey", _VALUE_AFTER_KEY),
    (
        tuple(v for w in ("passw", "secret") for v in (w, w.capitalize(), w.upper())),
        "keyname",
        _VALUE_AFTER_KEY,
    ),
    (
        (*(p + c for p in ("_token", "-token") for c in '"\\=:'), "_TOKEN="),
        "tokenkey",
        _VALUE_AFTER_KEY,
    ),
    (("sk-",), "whole", re.compile(rb"(?:proj-|ant-|live-|test-)?[A-Za-z0-9_\-]{16,}")),
    (("AKIA",), "whole", re.compile(rb"[0-9A-Z]{16}")),
    (("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "hf_"), "whole", re.compile(rb"[A-Za-z0-9]{30,}")),
    (("github_pat_",), "whole", re.compile(rb"[A-Za-z0-9_]{30,}")),
    (("xox",), "whole", re.compile(rb"[abposr]-[A-Za-z0-9\-]{10,}")),
    (("AIza",), "whole", re.compile(rb"[0-9A-Za-z_\-]{30,}")),
    (("sk_live_", "rk_live_"), "whole", re.compile(rb"[A-Za-z0-9]{16,}")),
)

_TRIGGERS: Final[tuple[str, ...]] = tuple(lit for lits, _, _ in _RULES for lit in lits)
_TRIGGER_RULE: Final[tuple[tuple[str, re.Pattern[bytes]], ...]] = tuple(
    (kind, pat) for lits, kind, pat in _RULES for _lit in lits
)


def _secret_span(
    data: bytes, start: int, end: int, kind: str, pat: re.Pattern[bytes]
) -> tuple[int, int] | None:
    """Where the secret announced by the literal at ``data[start:end]`` lies, if there is one."""
    if kind in ("credential", "whole") and start > 0 and data[start - 1] in _WORD:
        return None  # part of a longer word ("task-...", "subtoken ...")
    if kind == "apikey":
        head = data[max(0, start - 8) : start].lower()
        if not head.endswith(_KEY_PREFIXES):
            return None
    if kind == "tokenkey":
        end -= 1  # the literal includes the separator that follows the key name
    m = pat.match(data, end)
    if m is None:
        return None
    if kind == "whole":
        return start, m.end()
    return m.start(1), m.end(1)


def _redact_spans(data: bytes, hits: list[tuple[int, int, int]]) -> bytes:
    spans: list[tuple[int, int]] = []
    for index, start, end in hits:
        kind, pat = _TRIGGER_RULE[index]
        span = _secret_span(data, start, end, kind, pat)
        if span is not None:
            spans.append(span)
    if not spans:
        return data
    spans.sort()
    out: list[bytes] = []
    pos = 0
    for s, e in spans:
        if s < pos:
            s = pos
        if e <= s:
            continue
        out.append(data[pos:s])
        out.append(_REDACTED_BYTES)
        pos = e
    out.append(data[pos:])
    return b"".join(out)


_REDACTED_BYTES: Final = REDACTED.encode()


class _Scanner:
    """Finds the trigger literals in one pass (Aho-Corasick in Rust, without the GIL)."""

    __slots__ = ("_find",)

    def __init__(self) -> None:
        try:
            import ahocorasick_rs
        except ImportError:  # pragma: no cover - a declared dependency
            self._find: Callable[[bytes], list[tuple[int, int, int]]] | None = None
            return
        # Leftmost-first, not the default "standard" semantics: it lets the library skip
        # ahead with its prefilter, which makes the usual no-secret scan about ten times
        # faster (several GB/s). Because no trigger contains another (a test checks this),
        # both semantics report exactly the same non-overlapping hits.
        ac = ahocorasick_rs.BytesAhoCorasick(
            [t.encode() for t in _TRIGGERS],
            matchkind=ahocorasick_rs.MatchKind.LeftmostFirst,
            implementation=ahocorasick_rs.Implementation.DFA,
        )
        self._find = ac.find_matches_as_indexes

    def hits(self, data: bytes) -> list[tuple[int, int, int]]:
        """``(literal index, start, end)`` of every trigger found in ``data``."""
        if self._find is not None:
            return self._find(data)
        # Without the library: the same answer from a (slower) regular expression.
        return [  # pragma: no cover
            (_TRIGGER_INDEX[m.group()], m.start(), m.end()) for m in _TRIGGER_RE.finditer(data)
        ]


_SECRET_KEY: Final = re.compile(
    r"(?i)api[_-]?key|apikey|passw|passphrase|secret|authorization|private[_-]?key"
    r"|(?:access|auth|refresh|id|session)[_-]?token"
)
_TRIGGER_INDEX: Final = {t.encode(): i for i, t in enumerate(_TRIGGERS)}
_TRIGGER_RE: Final = re.compile(b"|".join(re.escape(t.encode()) for t in _TRIGGERS))


class Redactor:
    """Removes secrets from text: the built-in patterns, plus the user's own.

    ``extra`` is either regular expressions (strings or compiled; every match is replaced by
    ``[REDACTED]``) or a function ``(text) -> text``; both are applied to every string value
    of an event, never across JSON syntax, so they cannot break a line.
    """

    __slots__ = ("_func", "_scanner", "_user", "_user_text")

    def __init__(
        self, extra: Iterable[str | re.Pattern[str]] | Callable[[str], str] | None = None
    ) -> None:
        self._scanner = _Scanner()
        self._func: Callable[[str], str] | None = None
        self._user: re.Pattern[str] | None = None
        self._user_text: tuple[re.Pattern[str], ...] = ()
        if extra is None:
            return
        if callable(extra):
            self._func = extra
            return
        if isinstance(extra, (str, re.Pattern)):
            extra = [extra]
        pats: list[re.Pattern[str]] = []
        for p in extra:
            if isinstance(p, re.Pattern):
                pats.append(p)
            elif isinstance(p, str):
                try:
                    pats.append(re.compile(p))
                except re.error as exc:
                    raise ConfigurationError(
                        f"redact pattern {p!r} is not a valid regular expression: {exc}"
                    ) from exc
            else:
                raise ConfigurationError(
                    "redact must be a list of regular expressions (str or re.Pattern) or a "
                    f"function (str) -> str, not a list containing {type(p).__name__}"
                )
        self._user_text = tuple(pats)
        if pats:
            self._user = re.compile("|".join(f"(?:{p.pattern})" for p in pats))

    @property
    def walks_values(self) -> bool:
        """Whether string values must be redacted one by one (the user gave their own rules)."""
        return self._func is not None or self._user is not None

    def text(self, value: str) -> str:
        """``value`` with every secret replaced by ``[REDACTED]`` (for the console)."""
        return self.user(self.builtin_text(value))

    def builtin_text(self, value: str) -> str:
        """``value`` with the built-in rules applied (not the user's)."""
        data = value.encode("utf-8", "surrogatepass")
        hits = self._scanner.hits(data)
        if hits:
            new = _redact_spans(data, hits)
            if new is not data:
                value = new.decode("utf-8", "surrogatepass")
        return value

    def user(self, value: str) -> str:
        """``value`` after the user's own patterns or function only."""
        if self._func is not None:
            return self._func(value)
        if self._user is not None and self._user.search(value) is not None:
            for pat in self._user_text:
                value = pat.sub(REDACTED, value)
        return value

    def json_bytes(self, data: bytes) -> bytes:
        """JSON lines with the built-in rules applied; every line stays valid JSON.

        The rules work on the text of a line. In the rare case where that would break the
        line (a secret-looking key whose value is a number, say), the line is parsed and
        redacted value by value instead.
        """
        hits = self._scanner.hits(data)
        if not hits:
            return data
        out: list[bytes] = []
        pos = 0
        i, n = 0, len(hits)
        while i < n:
            start = hits[i][1]
            line_start = data.rfind(b"\n", 0, start) + 1
            line_end = data.find(b"\n", start)
            if line_end < 0:
                line_end = len(data)
            local = []
            while i < n and hits[i][1] < line_end:
                index, s, e = hits[i]
                local.append((index, s - line_start, e - line_start))
                i += 1
            line = data[line_start:line_end]
            new = _redact_spans(line, local)
            if new is not line:
                try:
                    orjson.loads(new)
                except orjson.JSONDecodeError:
                    new = self._by_value(line)
            out.append(data[pos:line_start])
            out.append(new)
            pos = line_end
        out.append(data[pos:])
        return b"".join(out)

    def _by_value(self, line: bytes) -> bytes:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return line  # not JSON: nothing here can be made worse
        return orjson.dumps(self._walk_builtin(value), option=orjson.OPT_NON_STR_KEYS)

    def _walk_builtin(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.builtin_text(value)
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if _SECRET_KEY.search(k) and not isinstance(v, (dict, list)):
                    out[self.builtin_text(k)] = REDACTED
                else:
                    out[self.builtin_text(k)] = self._walk_builtin(v)
            return out
        if isinstance(value, list):
            return [self._walk_builtin(v) for v in value]
        return value

    def walk(self, value: Any) -> Any:
        """``value`` (parsed JSON) with the user's rules applied to every string."""
        if isinstance(value, str):
            return self.user(value)
        if isinstance(value, dict):
            return {k: self.walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        return value


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
    """A record as one JSON line (with its newline); secrets are not yet redacted."""
    return orjson.dumps(record, default=json_default, option=_DUMPS_OPTIONS)


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


_DEFAULT_REDACTOR: Redactor | None = None


def default_redactor() -> Redactor:
    """The shared ``Redactor`` with the built-in patterns only."""
    global _DEFAULT_REDACTOR
    if _DEFAULT_REDACTOR is None:
        _DEFAULT_REDACTOR = Redactor()
    return _DEFAULT_REDACTOR


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
