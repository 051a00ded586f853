"""Identity codes: rule checks against an independent implementation, property-based."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.fi import hetu as stdnum_hetu

from schemas.hetu import CENTURY, hetu_violation, mask_hetu, parse_hetu

ALPHABET = "0123456789ABCDEFHJKLMNPRSTUVWXY"
SIGNS = {"+": 1800, "-": 1900, "U": 1900, "V": 1900, "W": 1900, "X": 1900, "Y": 1900,
         "A": 2000, "B": 2000, "C": 2000, "D": 2000, "E": 2000, "F": 2000}


def independent_is_valid(code: str) -> bool:
    """A second, deliberately plain reading of the contract's identity-code rule."""
    if len(code) != 11 or not (code[:6].isdigit() and code[7:10].isdigit()) or not code.isascii():
        return False
    sign = code[6]
    if sign not in SIGNS:
        return False
    try:
        dt.date(SIGNS[sign] + int(code[4:6]), int(code[2:4]), int(code[0:2]))
    except ValueError:
        return False
    if int(code[7:10]) < 2:
        return False
    return code[10] == ALPHABET[int(code[0:6] + code[7:10]) % 31]


def make(date: dt.date, sign: str, individual: int) -> str:
    digits = f"{date:%d%m}{date.year % 100:02d}{individual:03d}"
    return f"{digits[:6]}{sign}{digits[6:]}{ALPHABET[int(digits) % 31]}"


dates = st.dates(dt.date(1900, 1, 1), dt.date(2025, 12, 31))
signs_for = {1900: "-UVWXY", 2000: "ABCDEF"}


@st.composite
def valid_codes(draw: st.DrawFn) -> str:
    date = draw(dates)
    sign = draw(st.sampled_from(signs_for[2000 if date.year >= 2000 else 1900]))
    return make(date, sign, draw(st.integers(900, 999)))


def test_century_signs_match_the_2023_reform() -> None:
    assert CENTURY == SIGNS


@given(valid_codes())
def test_valid_codes_are_accepted_by_all_three(code: str) -> None:
    assert hetu_violation(code) is None
    assert independent_is_valid(code)
    assert stdnum_hetu.is_valid(code, allow_temporary=True)


@given(valid_codes())
def test_parse_gives_birth_date_and_sex(code: str) -> None:
    parsed = parse_hetu(code)
    assert parsed.birth_date.strftime("%d%m") == code[:4]
    assert parsed.sex == ("M" if int(code[7:10]) % 2 else "F")


@settings(max_examples=400)
@given(valid_codes(), st.integers(0, 10), st.characters(codec="ascii", exclude_characters="\n"))
def test_one_character_mutations_agree_with_independent_check(code: str, pos: int, ch: str) -> None:
    mutated = code[:pos] + ch + code[pos + 1:]
    assert (hetu_violation(mutated, require_synthetic=False) is None) == independent_is_valid(mutated)


@given(st.text(max_size=14))
def test_arbitrary_text_agrees_with_independent_check(text: str) -> None:
    assert (hetu_violation(text, require_synthetic=False) is None) == independent_is_valid(text)


@given(valid_codes())
def test_mask_hides_date_and_individual_number(code: str) -> None:
    masked = mask_hetu(code)
    assert masked is not None and len(masked) == 11
    assert not any(c.isdigit() for c in masked)
