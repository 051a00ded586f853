"""Finnish personal identity codes (henkilötunnus): parsing and rule checks.

python-stdnum (``stdnum.fi.hetu``) is the oracle for the check character and
knows the century signs added in 2023 (``U V W X Y`` for the 1900s, ``B C D E F``
for the 2000s). It lumps every failure into three exception classes, so the
contract's finer rule codes are told apart here, before stdnum has the last word.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from stdnum.exceptions import ValidationError
from stdnum.fi import hetu as _stdnum_hetu

CENTURY: dict[str, int] = {"+": 1800}
CENTURY.update(dict.fromkeys("-YXWVU", 1900))
CENTURY.update(dict.fromkeys("ABCDEF", 2000))
CENTURY_SIGNS = "".join(CENTURY)
CHECK_ALPHABET = "0123456789ABCDEFHJKLMNPRSTUVWXY"
SYNTHETIC_INDIVIDUAL = range(900, 1000)

HETU_SHAPE = re.compile(r"^([0-9]{2})([0-9]{2})([0-9]{2})(.)([0-9]{3})(.)\Z", re.DOTALL)
"""Eleven characters: DDMMYY, a sign, ZZZ, a check character (sign and check still unchecked)."""

HETU_PATTERN = r"^[0-3]\d[01]\d\d\d[-+A-FU-Y]\d{3}[0-9A-FHJ-NPR-Y]$"
"""A regular expression for a well-formed code (shape, sign, alphabet; not date or checksum)."""


@dataclass(frozen=True, slots=True)
class Hetu:
    """What the pipeline keeps of an identity code before it is dropped."""

    birth_date: dt.date
    individual: int
    sex: str  # "M" odd individual number, "F" even

    @property
    def birth_year(self) -> int:
        """Year of birth."""
        return self.birth_date.year


def check_character(ddmmyyzzz: str) -> str:
    """The check character of the nine digits DDMMYYZZZ."""
    return CHECK_ALPHABET[int(ddmmyyzzz) % 31]


def hetu_violation(code: str | None, *, require_synthetic: bool = True) -> str | None:
    """The rule code the identity code breaks first, or ``None`` if it is valid.

    Examples
    --------
    >>> hetu_violation("010190-900P") is None
    True
    >>> hetu_violation("010190-900R")
    'hetu_check_character'
    """
    if code is None or code == "":
        return "hetu_missing"
    m = HETU_SHAPE.match(code)
    if m is None:
        return "hetu_format"
    dd, mm, yy, sign, zzz, check = m.groups()
    if sign not in CENTURY:
        return "hetu_century_sign"
    try:
        dt.date(CENTURY[sign] + int(yy), int(mm), int(dd))
    except ValueError:
        return "hetu_date"
    individual = int(zzz)
    if individual < 2:
        return "hetu_individual_number"
    if require_synthetic and individual not in SYNTHETIC_INDIVIDUAL:
        return "hetu_not_synthetic"
    # stdnum upper-cases and strips before it checks; the contract does not.
    if check != check_character(dd + mm + yy + zzz):
        return "hetu_check_character"
    try:
        _stdnum_hetu.validate(code, allow_temporary=True)
    except ValidationError:  # pragma: no cover - the checks above are stricter
        return "hetu_check_character"
    return None


def parse_hetu(code: str) -> Hetu:
    """Birth date, individual number and sex of a code that :func:`hetu_violation` accepted."""
    m = HETU_SHAPE.match(code)
    if m is None:
        raise ValueError(f"identity code of {len(code)} characters: expected 11")
    dd, mm, yy, sign, zzz, _ = m.groups()
    individual = int(zzz)
    birth = dt.date(CENTURY[sign] + int(yy), int(mm), int(dd))
    return Hetu(birth_date=birth, individual=individual, sex="M" if individual % 2 else "F")


def mask_hetu(code: str | None) -> str | None:
    """A masked identity code safe to store in quarantine: no date, no individual number.

    Keeps only the length and the century sign, e.g. ``'******-****'``.
    """
    if code is None:
        return None
    if len(code) == 11:
        return "******" + (code[6] if code[6] in CENTURY else "*") + "****"
    return "*" * min(len(code), 20)
