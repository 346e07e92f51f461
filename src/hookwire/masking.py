"""Masking personal data in text before it leaves the process: :func:`mask_pii`, and the
``mask=`` of every handler that lets events out.

:func:`mask_pii` replaces e-mail addresses with ``[EMAIL]``, phone numbers with ``[PHONE]``
and payment card numbers with ``[CARD]``. A card number is 13 to 19 digits (spaces or dashes
between groups allowed) that pass the Luhn check, so order numbers and timestamps stay; a
phone number is an international ``+`` number or a 10-digit national one written with
separators, so plain counts and ids stay. Secrets (API keys, tokens, passwords in URLs) are
redacted by ``hookwire.redaction`` wherever text leaves through a handler, masked or not.

``mask=`` on ``FileLogCallback``, ``OpenTelemetryCallback``, ``TraceStoreCallback``,
``OutboxCallback`` and ``ConsoleCallback`` takes a function ``(str) -> str`` applied to every
text the handler lets out: prompts, answers, tool inputs and outputs, memory contents, error
messages (and, in a record, every other string value too, so an e-mail used as a user id is
masked alike). ``mask=True`` is :func:`mask_pii`, ``mask=False`` no masking, and ``None`` (the
default) the process-wide default, which :func:`set_default_mask` sets (none until then) for
handlers built after it. Build your own :class:`Masker` to choose the rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from .errors import ConfigurationError
from .redaction import Redactor, default_redactor

__all__ = [
    "Mask",
    "Masker",
    "default_mask",
    "luhn_ok",
    "mask_pii",
    "masked_redactor",
    "masked_text",
    "resolve_mask",
    "set_default_mask",
]

#: What ``mask=`` takes: a function ``(str) -> str``, ``True`` (:func:`mask_pii`), ``False``
#: (none) or ``None`` (the default set by :func:`set_default_mask`).
Mask = Callable[[str], str] | bool | None

_EMAIL: Final = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD: Final = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE: Final = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
    r"|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4})(?![\w])"
)


def luhn_ok(digits: str) -> bool:
    """Whether ``digits`` (digits only) passes the Luhn check of card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class Masker:
    """A text function ``(str) -> str`` masking e-mails, card numbers and phone numbers (each
    turned off by its flag)."""

    __slots__ = ("cards", "emails", "phones")

    def __init__(self, *, emails: bool = True, cards: bool = True, phones: bool = True) -> None:
        self.emails = emails
        self.cards = cards
        self.phones = phones

    def __call__(self, text: str) -> str:
        """``text`` with what the masker finds replaced."""
        if self.emails and "@" in text:
            text = _EMAIL.sub("[EMAIL]", text)
        if not any(c.isdigit() for c in text):
            return text
        if self.cards:
            text = _CARD.sub(_card, text)
        if self.phones:
            text = _PHONE.sub("[PHONE]", text)
        return text


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return "[CARD]" if luhn_ok(digits) else match.group()


#: The built-in masker: e-mails, Luhn-checked card numbers and phone numbers.
mask_pii: Final = Masker()


_DEFAULT_MASK: Callable[[str], str] | None = None


def set_default_mask(mask: Callable[[str], str] | bool | None) -> None:
    """Set the mask of handlers built from now on without a ``mask=`` of their own:
    a function ``(str) -> str``, ``True`` for :func:`mask_pii`, ``None``/``False`` for none."""
    global _DEFAULT_MASK
    _DEFAULT_MASK = None if mask is None else resolve_mask(mask)


def default_mask() -> Callable[[str], str] | None:
    """The process-wide default mask (``None``: no masking)."""
    return _DEFAULT_MASK


def resolve_mask(mask: Mask) -> Callable[[str], str] | None:
    """The function a handler's ``mask=`` stands for (see ``Mask``)."""
    if mask is None:
        return _DEFAULT_MASK
    if mask is True:
        return mask_pii
    if mask is False:
        return None
    if not callable(mask):
        raise ConfigurationError(
            f"mask must be a function (str) -> str, True (mask_pii) or False, not {mask!r}"
        )
    return mask


def masked_redactor(
    redact: Iterable[Any] | Callable[[str], str] | None = None, mask: Mask = None
) -> Redactor:
    """The ``Redactor`` of a handler with ``redact=`` and ``mask=``: the built-in secret
    rules, then the user's ``redact`` rules, then the mask, on every text value."""
    fn = resolve_mask(mask)
    if fn is None:
        return default_redactor() if redact is None else Redactor(redact)
    if redact is None:
        return Redactor(fn)
    users = Redactor(redact)
    mask_fn = fn

    def both(text: str) -> str:
        return mask_fn(users.user(text))

    return Redactor(both)


def masked_text(mask: Mask = None) -> Callable[[str], str]:
    """A function ``(str) -> str`` redacting secrets, then masking (for handlers that show
    or send text, not JSON lines: the console, span attributes)."""
    builtin = default_redactor().text
    fn = resolve_mask(mask)
    if fn is None:
        return builtin
    mask_fn = fn

    def text(value: str) -> str:
        return mask_fn(builtin(value))

    return text
