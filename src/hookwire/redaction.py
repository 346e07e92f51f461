"""``Redactor``: secrets taken out of text and JSON lines before they are written anywhere.

The built-in rules find API keys (``sk-...``, AWS, GitHub, Slack, Google, Stripe and Hugging
Face key formats), ``Bearer``/``Basic``/``Token`` credentials, ``Authorization`` values with or
without a scheme, passwords in URLs (``scheme://user:password@host``, a password holding ``@``
or ``/`` included) and the values of keys named like ``api_key``, ``password``, ``secret``,
``access_token`` or ``authorization``. A key or token is found wherever it starts a word: after
a space, a newline, a tab, a control character or a quote, in plain text and in JSON text
(where those are escapes such as ``\\n`` or ``\\u001b``).

``FileLogCallback`` (``json_bytes``), ``ConsoleCallback``, ``OpenTelemetryCallback`` and the
database URLs hookwire shows (``redact_url``) all use these rules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from .errors import ConfigurationError

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "Redactor",
    "default_redactor",
    "redact_logs",
    "redact_url",
]

#: What a redacted secret is replaced with.
REDACTED: Final = "[REDACTED]"

# How redaction finds secrets fast: one Aho-Corasick scan (in Rust, without the GIL) looks for
# the literals every secret starts with or is named by; almost every batch has none and is
# written untouched. At each hit, one small anchored pattern decides whether a secret follows
# and where it ends. A replaced span never holds a newline, an unescaped quote or half of an
# escape, so redacting JSON text never joins lines nor ends a string early (and a line that
# would still break is redacted value by value, see Redactor.json_bytes).
#
# The same rules run on plain text and on JSON text, where a tab is the two characters "\t":
# a separator is a space or a tab, raw or escaped.
_SEP = rb"(?:[ \t]|\\t)"
_SCHEMES = rb"(?i:bearer|basic|token)"
# The key and its value may be quoted as in JSON ("...", \"...\" in JSON text) or as in a
# Python repr ('...': a dict of headers or keyword arguments in an error message); a value
# opened with ' ends at the next '.
_KEY_END = rb'[A-Za-z_\-]*(?:\\?"|\')?' + _SEP + rb"*[:=]" + _SEP + rb'*(?:\\?"|(?P<q>\'))?'
_VALUE_AFTER_KEY = re.compile(
    _KEY_END + rb"(?!\[REDACTED\])(?!" + _SCHEMES + _SEP + rb")"
    rb"(?P<v>(?:(?(q)[^'\"\\\s,&;}]|[^\"\\\s,&;}]))+)"
)
# An Authorization value is a secret whatever its scheme (or none): all of it, up to the end
# of the value (a quote) or of the line; a known scheme's name is kept.
_AUTHORIZATION = re.compile(
    _KEY_END + rb"(?!\[REDACTED\])(?:" + _SCHEMES + _SEP + rb"+)?"
    rb"(?P<v>(?:(?(q)[^'\"\\\r\n]|[^\"\\\r\n]))+)"
)
# A credential, unlike a word of prose, has a digit, or "=" padding, or several capitals in a
# long run of letters (base64).
_CREDENTIAL_BODY = (
    rb"(?=[A-Za-z._~+/\-]*[0-9]|[A-Za-z0-9._~+/\-]{8,}=|"
    rb"(?=[A-Za-z0-9._~+/\-]{12})(?:[a-z._~+/\-]*[A-Z]){2})(?P<v>[A-Za-z0-9._~+/\-]{8,}=*)"
)
_AFTER_SCHEME = re.compile(_SEP + rb"+" + _CREDENTIAL_BODY)
_CREDENTIAL = re.compile(_SEP + rb"*" + _CREDENTIAL_BODY)
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
# What may end right before a secret without being a word: a JSON escape (a newline is "\n"
# there) or a terminal's control sequence (ESC [ 2 J), raw or in JSON.
_ESCAPE = re.compile(
    rb"(?:\\(?:[ntrbf]|u[0-9A-Fa-f]{4})|(?:\x1b|\\u001[bB])\[[0-9;?]{0,16}[A-Za-z])\Z"
)
_KEY_PREFIXES = (b"api_", b"api-", b"api", b"private_", b"private-", b"x-api-")
# A URL in running text: up to a blank; in JSON text, up to the end of the string too, over
# escaped quotes and backslashes (a password may hold them). A URL given alone is all of it.
_URL_IN_TEXT = re.compile(rb"\S*")
_URL_IN_JSON = re.compile(rb'(?:[^"\\\s]|\\["\\/])*')
_URL_USER = re.compile(rb'[^:/@\s"\\]*:')
_URL_USER_ALONE = re.compile(rb"[^:/@]*:")

# (literals, kind, pattern matched right after the literal)
_RULES: Final[tuple[tuple[tuple[str, ...], str, re.Pattern[bytes] | None], ...]] = (
    (
        tuple(v for w in ("bearer", "basic") for v in (w, w.capitalize(), w.upper())),
        "credential",
        _AFTER_SCHEME,
    ),
    (
        tuple(v + sep for v in ("token", "Token", "TOKEN") for sep in (" ", "\t", "\\t")),
        "credential",
        _CREDENTIAL,
    ),
    (("://",), "url", None),
    (("key", "Key", "KEY"), "apikey", _VALUE_AFTER_KEY),
    (
        tuple(v for w in ("passw", "secret") for v in (w, w.capitalize(), w.upper())),
        "keyname",
        _VALUE_AFTER_KEY,
    ),
    (("uthorization", "UTHORIZATION"), "keyname", _AUTHORIZATION),
    (
        (*(p + c for p in ("_token", "-token") for c in "\"\\=:'"), "_TOKEN="),
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
_TRIGGER_RULE: Final[tuple[tuple[str, re.Pattern[bytes] | None], ...]] = tuple(
    (kind, pat) for lits, kind, pat in _RULES for _lit in lits
)


def _in_word(data: bytes, start: int) -> bool:
    """Whether ``data[start]`` continues a word ("task-...", "subtoken ...").

    A letter that ends an escape (the ``n`` of a JSON ``\\n``, the ``b`` of ``\\u001b``) ends
    no word: what follows a newline or a control character starts one.
    """
    if start == 0 or data[start - 1] not in _WORD:
        return False
    return _ESCAPE.search(data, max(0, start - 24), start) is None


def _url_password(data: bytes, pos: int, stop: int | None) -> tuple[int, int] | None:
    """Where the password of the URL whose ``user:password@`` may start at ``pos`` lies.

    A password may hold any character, ``@`` and ``/`` included, so it runs to the last ``@``
    of the URL: of the whole string when ``stop`` is None (a string known to be a URL), else
    up to ``stop``, where a URL in running text ends. There, ``host:8080/path@x`` is a port and
    a path, not a password.
    """
    m = (_URL_USER_ALONE if stop is None else _URL_USER).match(data, pos)
    if m is None:
        return None
    start = m.end()
    alone = stop is None
    if stop is None:
        stop = len(data)
    at = data.rfind(b"@", start, stop)
    if at <= start:
        return None
    if not alone:
        slash = data.find(b"/", start, at)
        if slash > start and data[start:slash].isdigit():
            return None
    return start, at


def _secret_span(
    data: bytes, start: int, end: int, kind: str, pat: re.Pattern[bytes] | None, json: bool
) -> tuple[int, int] | None:
    """Where the secret announced by the literal at ``data[start:end]`` lies, if there is one."""
    if kind in ("credential", "whole") and _in_word(data, start):
        return None
    if kind == "url":
        token = (_URL_IN_JSON if json else _URL_IN_TEXT).match(data, end)
        return _url_password(data, end, token.end() if token else end)
    if kind == "apikey":
        head = data[max(0, start - 8) : start].lower()
        if not head.endswith(_KEY_PREFIXES):
            return None
    if kind == "tokenkey":
        end -= 1  # the literal includes the separator that follows the key name
    assert pat is not None
    m = pat.match(data, end)
    if m is None and kind == "tokenkey" and data.startswith(b"\\t", end):
        # "-token\t<credential>" in JSON text: this literal hid the "token\t" one.
        m = _CREDENTIAL.match(data, end)
    if m is None:
        return None
    if kind == "whole":
        return start, m.end()
    return m.span("v")


def _redact_spans(data: bytes, hits: list[tuple[int, int, int]], json: bool = False) -> bytes:
    spans: list[tuple[int, int]] = []
    for index, start, end in hits:
        kind, pat = _TRIGGER_RULE[index]
        span = _secret_span(data, start, end, kind, pat, json)
        if span is not None:
            spans.append(span)
    if not spans:
        return data
    spans.sort()
    out: list[bytes] = []
    pos = 0
    for s, e in spans:
        if s < pos:
            # Overlapping secrets (an Authorization value and its Bearer token) are one.
            pos = max(pos, e)
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
            new = _redact_spans(line, local, json=True)
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


_DEFAULT_REDACTOR: Redactor | None = None


def default_redactor() -> Redactor:
    """The shared ``Redactor`` with the built-in patterns only."""
    global _DEFAULT_REDACTOR
    if _DEFAULT_REDACTOR is None:
        _DEFAULT_REDACTOR = Redactor()
    return _DEFAULT_REDACTOR


def redact_url(url: str) -> str:
    """``url`` with its password hidden, for messages, reprs, logs and the command line.

    Everything between ``user:`` and the URL's last ``@`` is the password, whatever it holds
    (an ``@`` that should have been written ``%40``, ``/``, ``:``, ``#``, ``?``); the built-in
    rules then hide any other secret (``?password=...``). A string that is not a URL is
    treated as one without its scheme.
    """
    data = url.encode("utf-8", "surrogatepass")
    scheme = data.find(b"://")
    span = _url_password(data, scheme + 3 if scheme >= 0 else 0, None)
    if span is not None:
        data = data[: span[0]] + _REDACTED_BYTES + data[span[1] :]
    return default_redactor().builtin_text(data.decode("utf-8", "surrogatepass"))


class RedactingFilter(logging.Filter):
    """A ``logging`` filter that takes secrets out of a record's message and traceback.

    hookwire's loggers carry it, so a handler's exception that quotes an API key (a 401 that
    echoes it) is logged without it, whatever handlers and formatters the app configures: the
    traceback is formatted and redacted here, and formatters use that text as it is.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = default_redactor()
        message = record.getMessage()
        clean = redactor.builtin_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redactor.builtin_text(text)
        if record.stack_info:
            record.stack_info = redactor.builtin_text(record.stack_info)
        return True


def redact_logs(*names: str) -> None:
    """Put a ``RedactingFilter`` on the loggers ``names`` (once each)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
