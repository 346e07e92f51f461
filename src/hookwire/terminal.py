"""``visible``: text made safe to print on a terminal.

Prompts, answers, streamed tokens, tool results and error messages come from users and models.
Printed as they are, their control characters drive the terminal: an escape sequence clears
the screen or sets the window's title, a carriage return or a backspace writes over what was
printed before (a forged log line), a bidirectional override reorders what is shown. Every
such character is shown as an escape instead (``\\x1b``, ``\\r``, ``\\x08``, ``\\u202e``), so the
text reads as what it is and the terminal does nothing. Newlines and tabs are kept where the
output has room for them (``keep``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["CONTROL_CHARACTERS", "visible"]


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_NAMED: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}

#: The characters :func:`visible` escapes: C0 controls, DEL, C1 controls (``\\x9b`` starts an
#: escape sequence on some terminals), the bidirectional embeddings, overrides and isolates,
#: and the line and paragraph separators.
CONTROL_CHARACTERS: Final[frozenset[str]] = frozenset(
    chr(c)
    for c in (
        *range(0x00, 0x20),
        *range(0x7F, 0xA0),
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
        0x2028,
        0x2029,
    )
)

_TABLE: Final[dict[int, str]] = {
    ord(c): _NAMED.get(c) or _escape(ord(c)) for c in CONTROL_CHARACTERS
}
_KEEP_TABLES: dict[str, dict[int, str]] = {"": _TABLE}


def visible(text: str, keep: str = "") -> str:
    """``text`` with every control character shown as an escape (see the module docstring),
    except those in ``keep`` (``"\\n\\t"`` for output with room for lines and tabs)."""
    # isprintable() is one C pass that is True for almost every text (it is False for every
    # control character, and for a few harmless ones such as a no-break space, which the
    # table then leaves alone): the usual text is returned as it is, without a copy.
    if text.isprintable():
        return text
    table = _KEEP_TABLES.get(keep)
    if table is None:
        table = {k: v for k, v in _TABLE.items() if chr(k) not in keep}
        _KEEP_TABLES[keep] = table
    return text.translate(table)
