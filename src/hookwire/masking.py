"""Masking personal data in text before it leaves the process: :func:`mask_pii`.

Replaces e-mail addresses with ``[EMAIL]``, phone numbers with ``[PHONE]`` and payment card
numbers with ``[CARD]``. A card number is 13 to 19 digits (spaces or dashes between groups
allowed) that pass the Luhn check, so order numbers and timestamps stay; a phone number is
an international ``+`` number or a 10-digit national one written with separators, so plain
counts and ids stay. Secrets (API keys, tokens, passwords in URLs) are redacted by
``hookwire.redaction`` wherever text leaves through a handler.

Pass it where a handler takes a text function: ``OutboxCallback(..., mask=mask_pii)``,
``FileLogCallback(..., redact=mask_pii)``; or build your own :class:`Masker` with the rules
you want.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["Masker", "luhn_ok", "mask_pii"]

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
