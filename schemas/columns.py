"""The columns of both extracts: one declarative description, read by every check.

The pydantic row models (:mod:`schemas.kela`, :mod:`schemas.avain`), the
vectorised checks of the loader and the JSON Schema exports are all derived from
:data:`KELA_COLUMNS` and :data:`AVAIN_COLUMNS`. A rule changes here or nowhere.

:func:`check_value` is the scalar reference implementation of the column rules:
it turns one raw field (the text of a CSV cell, or a Parquet value) into its
typed value, or names the rule it breaks.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from schemas.hetu import HETU_PATTERN, hetu_violation

Kind = Literal["hetu", "text", "code3", "yyyymm", "int", "decimal", "date", "domain", "factors", "codes"]

GOAL_DOMAINS: tuple[str, ...] = (
    "TOIMEENTULO",
    "ASUMINEN",
    "TYO_OPINNOT",
    "TERVEYS",
    "MIELENTERVEYS",
    "PAIHTEET",
    "SOSIAALISET_SUHTEET",
    "ARJENHALLINTA",
)
"""AVAIN goal-domain codes (``tavoitealue``, and the codes of ``tilannetekijat``)."""

FIRST_MONTH = "201701"
"""Kela took over basic income support in January 2017."""
FIRST_ASSESSMENT_DATE = dt.date(2017, 1, 1)
MAX_EUR = Decimal("100000")
"""Upper bound of a plausible monthly euro amount for one person (exclusive)."""

INT_PATTERN = re.compile(r"[+-]?[0-9]{1,9}")
DECIMAL_PATTERN = re.compile(r"[+-]?[0-9]{1,12}(,[0-9]{1,2})?")
YYYYMM_PATTERN = re.compile(r"([0-9]{4})(0[1-9]|1[0-2])")
DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
CODE3_PATTERN = re.compile(r"[0-9]{3}")
FACTOR_PATTERN = re.compile(r"(" + "|".join(GOAL_DOMAINS) + r"):[+-]")


@dataclass(frozen=True, slots=True)
class Column:
    """One contract column: its name, kind, whether it is required, and its domain."""

    name: str
    kind: Kind
    description: str
    required: bool = True
    allowed: tuple[int, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    logical_type: str = "text"
    rules: tuple[str, ...] = field(default=())

    @property
    def rule_missing(self) -> str:
        """Code of the rule broken when a required value is empty."""
        return f"{self.name}_missing"


def _int(name: str, description: str, *, allowed: tuple[int, ...] | None = None,
         minimum: int | None = None, maximum: int | None = None, required: bool = True) -> Column:
    rules = ((f"{name}_missing",) if required else ()) + (f"{name}_type", f"{name}_range")
    return Column(name, "int", description, required=required, allowed=allowed,
                  minimum=minimum, maximum=maximum, logical_type="integer", rules=rules)


def _decimal(name: str, description: str) -> Column:
    return Column(name, "decimal", description, minimum=0, logical_type="decimal",
                  rules=(f"{name}_missing", f"{name}_type", f"{name}_range"))


_HETU_RULES = ("hetu_missing", "hetu_format", "hetu_century_sign", "hetu_date",
               "hetu_individual_number", "hetu_not_synthetic", "hetu_check_character")
_KUNTA_RULES = ("kuntanumero_missing", "kuntanumero_format", "kuntanumero_unknown")

KELA_COLUMNS: tuple[Column, ...] = (
    Column("hetu", "hetu", "personal identity code DDMMYYCZZZQ", rules=_HETU_RULES),
    Column("kotitalous_id", "text", "household id, stable while the household exists",
           rules=("kotitalous_id_missing",)),
    Column("kuntanumero", "code3", "municipality of residence, 3-digit Statistics Finland code",
           rules=_KUNTA_RULES),
    Column("tilastokuukausi", "yyyymm", "benefit month YYYYMM, equal to the file's month",
           rules=("tilastokuukausi_missing", "tilastokuukausi_format", "tilastokuukausi_range",
                  "month_mismatch")),
    _int("kotitaloustyyppi", "household type 1-5", minimum=1, maximum=5),
    _int("tyomarkkina_asema", "labour-market status 1-6 (3 = long-term unemployed)", minimum=1, maximum=6),
    _decimal("perusosa_eur", "basic amount applying to the person's household share, euros"),
    _decimal("myonnetty_eur", "basic income support granted for the month, euros"),
    _int("perusosan_alennus_pct", "reduction of the basic amount, percent", allowed=(0, 20, 40)),
    _int("ohjaus_sosiaalityohon", "Kela notified social work this month", allowed=(0, 1)),
)

AVAIN_COLUMNS: tuple[Column, ...] = (
    Column("hetu", "hetu", "personal identity code DDMMYYCZZZQ", rules=_HETU_RULES),
    Column("kuntanumero", "code3", "municipality doing the assessment, equal to the file's",
           rules=_KUNTA_RULES + ("kuntanumero_file_mismatch",)),
    Column("arviointipvm", "date", "assessment date YYYY-MM-DD",
           rules=("arviointipvm_missing", "arviointipvm_format", "arviointipvm_range", "year_mismatch")),
    _int("arviointikerta", "0 = client plan made (baseline), 1, 2, ... = reviews", minimum=0),
    Column("tavoitealue", "domain", "goal domain code", rules=("tavoitealue_missing", "tavoitealue_unknown")),
    _int("tilannearvio", "client's situation in the domain, 0 (worst) to 10 (best)", minimum=0, maximum=10),
    _int("tavoitteen_saavutus", "how far the previous goal was achieved, 1-5; empty at baseline",
         minimum=1, maximum=5, required=False),
    Column("tilannetekijat", "factors", "'|'-separated CODE:+ / CODE:- situation factors",
           required=False, rules=("tilannetekijat_format",)),
    Column("palvelut", "codes", "'|'-separated service codes, kept as given", required=False),
    Column("menetelmat", "codes", "'|'-separated social-work method codes", required=False),
    _int("asiakas_lasna", "client present at the assessment", allowed=(0, 1)),
)

COLUMNS: dict[str, tuple[Column, ...]] = {"kela": KELA_COLUMNS, "avain": AVAIN_COLUMNS}
KEYS: dict[str, tuple[str, ...]] = {
    "kela": ("hetu", "tilastokuukausi"),
    "avain": ("hetu", "arviointipvm", "tavoitealue"),
}
"""The unique key of each extract (rule ``duplicate_key``)."""


@dataclass(frozen=True, slots=True)
class CheckContext:
    """What a row is checked against besides itself."""

    municipalities: frozenset[str]
    file_month: str | None = None  # Kela: YYYYMM from the file name
    file_kuntanumero: str | None = None  # AVAIN: from the file name
    file_year: int | None = None  # AVAIN: from the file name
    today: dt.date = field(default_factory=dt.date.today)
    require_synthetic_hetu: bool = True


class RuleBroken(ValueError):
    """A value breaks the contract rule named by ``code``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _blank(raw: Any) -> bool:
    if raw is None:
        return True
    if isinstance(raw, float) and math.isnan(raw):
        return True
    return isinstance(raw, str) and raw == ""


def _as_text(raw: Any) -> str:
    return raw if isinstance(raw, str) else str(raw)


def check_value(col: Column, raw: Any, ctx: CheckContext) -> Any:
    """The typed value of one raw field, or :class:`RuleBroken` naming the first rule it breaks.

    Raw CSV fields are text, taken exactly as delivered (no trimming: a padded value
    is a type error). Parquet values may already be typed.
    """
    if _blank(raw):
        if col.required:
            raise RuleBroken(col.rule_missing, f"{col.name} is empty")
        return None
    return _CHECKERS[col.kind](col, raw, ctx)


def _check_hetu(col: Column, raw: Any, ctx: CheckContext) -> str:
    text = _as_text(raw)
    code = hetu_violation(text, require_synthetic=ctx.require_synthetic_hetu)
    if code is not None:
        raise RuleBroken(code, f"hetu breaks {code}")
    return text


def _check_text(col: Column, raw: Any, ctx: CheckContext) -> str:
    return _as_text(raw)


def _check_code3(col: Column, raw: Any, ctx: CheckContext) -> str:
    text = _as_text(raw)
    if not CODE3_PATTERN.fullmatch(text):
        raise RuleBroken("kuntanumero_format", f"kuntanumero {text!r}: expected 3 digits")
    if text not in ctx.municipalities:
        raise RuleBroken("kuntanumero_unknown", f"kuntanumero {text!r} is not in municipalities.csv")
    if ctx.file_kuntanumero is not None and text != ctx.file_kuntanumero:
        raise RuleBroken("kuntanumero_file_mismatch",
                         f"kuntanumero {text!r} in a file of municipality {ctx.file_kuntanumero}")
    return text


def _check_yyyymm(col: Column, raw: Any, ctx: CheckContext) -> str:
    text = _as_text(raw)
    m = YYYYMM_PATTERN.fullmatch(text)
    if m is None:
        raise RuleBroken("tilastokuukausi_format", f"tilastokuukausi {text!r}: expected YYYYMM")
    if text < FIRST_MONTH or text > ctx.today.strftime("%Y%m"):
        raise RuleBroken("tilastokuukausi_range", f"tilastokuukausi {text} outside {FIRST_MONTH}..today")
    if ctx.file_month is not None and text != ctx.file_month:
        raise RuleBroken("month_mismatch", f"tilastokuukausi {text} in the file of month {ctx.file_month}")
    return text


def _check_int(col: Column, raw: Any, ctx: CheckContext) -> int:
    if isinstance(raw, bool) or isinstance(raw, float):
        raise RuleBroken(f"{col.name}_type", f"{col.name} {raw!r}: expected an integer")
    if isinstance(raw, int):
        value = raw
    else:
        text = _as_text(raw)
        if not INT_PATTERN.fullmatch(text):
            raise RuleBroken(f"{col.name}_type", f"{col.name} {text!r}: expected an integer")
        value = int(text)
    if not _in_domain(col, value):
        raise RuleBroken(f"{col.name}_range", f"{col.name} {value}: expected {_domain_text(col)}")
    return value


def _in_domain(col: Column, value: int) -> bool:
    if col.allowed is not None and value not in col.allowed:
        return False
    if col.minimum is not None and value < col.minimum:
        return False
    return not (col.maximum is not None and value > col.maximum)


def _domain_text(col: Column) -> str:
    if col.allowed is not None:
        return "one of " + ", ".join(map(str, col.allowed))
    if col.maximum is None:
        return f">= {col.minimum}"
    return f"{col.minimum}-{col.maximum}"


def _check_decimal(col: Column, raw: Any, ctx: CheckContext) -> Decimal:
    if isinstance(raw, Decimal | int | float) and not isinstance(raw, bool):
        value = Decimal(str(raw)) if not isinstance(raw, Decimal) else raw
        if not value.is_finite() or value != value.quantize(Decimal("0.01")):
            raise RuleBroken(f"{col.name}_type", f"{col.name} {raw!r}: expected a finite amount in cents")
    else:
        text = _as_text(raw)
        if not DECIMAL_PATTERN.fullmatch(text):
            raise RuleBroken(f"{col.name}_type",
                             f"{col.name} {text!r}: expected a decimal with a decimal comma, e.g. 487,89")
        try:
            value = Decimal(text.replace(",", "."))
        except InvalidOperation as exc:  # pragma: no cover - the pattern admits only numbers
            raise RuleBroken(f"{col.name}_type", f"{col.name} {text!r}: not a number") from exc
    if value < 0 or value >= MAX_EUR:
        raise RuleBroken(f"{col.name}_range", f"{col.name} {value}: expected >= 0 and < {MAX_EUR}")
    return value


def _check_date(col: Column, raw: Any, ctx: CheckContext) -> dt.date:
    if isinstance(raw, dt.datetime):
        value = raw.date()
    elif isinstance(raw, dt.date):
        value = raw
    else:
        text = _as_text(raw)
        try:
            if not DATE_PATTERN.fullmatch(text):
                raise ValueError(text)
            value = dt.date.fromisoformat(text)
        except ValueError:
            raise RuleBroken("arviointipvm_format", f"arviointipvm {text!r}: expected a date YYYY-MM-DD") from None
    if value < FIRST_ASSESSMENT_DATE or value > ctx.today:
        raise RuleBroken("arviointipvm_range", f"arviointipvm {value} outside {FIRST_ASSESSMENT_DATE}..today")
    if ctx.file_year is not None and value.year != ctx.file_year:
        raise RuleBroken("year_mismatch", f"arviointipvm {value} in the file of year {ctx.file_year}")
    return value


def _check_domain(col: Column, raw: Any, ctx: CheckContext) -> str:
    text = _as_text(raw)
    if text not in GOAL_DOMAINS:
        raise RuleBroken("tavoitealue_unknown", f"tavoitealue {text!r}: expected one of {', '.join(GOAL_DOMAINS)}")
    return text


def _check_factors(col: Column, raw: Any, ctx: CheckContext) -> str:
    text = _as_text(raw)
    bad = [item for item in text.split("|") if not FACTOR_PATTERN.fullmatch(item)]
    if bad:
        raise RuleBroken("tilannetekijat_format", f"tilannetekijat item {bad[0]!r}: expected CODE:+ or CODE:-")
    return text


_CHECKERS = {
    "hetu": _check_hetu,
    "text": _check_text,
    "code3": _check_code3,
    "yyyymm": _check_yyyymm,
    "int": _check_int,
    "decimal": _check_decimal,
    "date": _check_date,
    "domain": _check_domain,
    "factors": _check_factors,
    "codes": _check_text,
}


def json_schema_of(col: Column) -> dict[str, Any]:
    """The JSON Schema of one column's value, as the contract states it."""
    schema: dict[str, Any] = {"description": col.description}
    if col.kind == "int":
        schema["type"] = "integer"
        if col.allowed is not None:
            schema["enum"] = list(col.allowed)
        if col.minimum is not None:
            schema["minimum"] = col.minimum
        if col.maximum is not None:
            schema["maximum"] = col.maximum
    elif col.kind == "decimal":
        schema.update(type="number", minimum=0, exclusiveMaximum=int(MAX_EUR), multipleOf=0.01)
    elif col.kind == "hetu":
        schema.update(type="string", pattern=HETU_PATTERN, minLength=11, maxLength=11)
    elif col.kind == "code3":
        schema.update(type="string", pattern=f"^{CODE3_PATTERN.pattern}$")
    elif col.kind == "yyyymm":
        schema.update(type="string", pattern=f"^{YYYYMM_PATTERN.pattern}$", minLength=6, maxLength=6)
    elif col.kind == "date":
        schema.update(type="string", format="date")
    elif col.kind == "domain":
        schema.update(type="string", enum=list(GOAL_DOMAINS))
    elif col.kind == "factors":
        schema.update(type="string", pattern=r"^((" + "|".join(GOAL_DOMAINS) + r"):[+-])(\|(" + "|".join(GOAL_DOMAINS) + r"):[+-])*$")
    else:
        schema["type"] = "string"
    if not col.required:
        schema = {"anyOf": [schema, {"type": "null"}], "description": col.description}
    schema["x-rules"] = list(col.rules)
    return schema
