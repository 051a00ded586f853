"""The contract's row and set rules, vectorised over a frame of raw text fields.

Each column's checks are built from its :class:`~schemas.columns.Column` spec
(kind, domain, rules), the same spec the pydantic row models are built from, so
there is one source of truth; ``tests/pipeline/load/test_checks.py`` shows on
generated rows that :func:`broken_rules` and :func:`schemas.rows.explain` agree
row for row. Every row gets the code of the first rule it breaks (in the
precedence of :data:`schemas.rules.PRECEDENCE`) or null, and the list of all
the rules it breaks.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from schemas.columns import (
    DATE_PATTERN,
    DECIMAL_PATTERN,
    FACTOR_PATTERN,
    FIRST_ASSESSMENT_DATE,
    FIRST_MONTH,
    GOAL_DOMAINS,
    INT_PATTERN,
    KEYS,
    MAX_EUR,
    YYYYMM_PATTERN,
    CheckContext,
    Column,
)
from schemas.columns import COLUMNS as CONTRACT_COLUMNS
from schemas.hetu import CENTURY, CHECK_ALPHABET, SYNTHETIC_INDIVIDUAL
from schemas.rules import PRECEDENCE

RULE_OF = {i: code for code, i in PRECEDENCE.items()}


def _full(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _code(rule: str) -> pl.Expr:
    return pl.lit(PRECEDENCE[rule], dtype=pl.Int32)


def _first(conditions: list[tuple[pl.Expr, str]]) -> pl.Expr:
    """The precedence number of the first condition that holds, else null."""
    expr = pl.lit(None, dtype=pl.Int32)
    for cond, rule in reversed(conditions):
        expr = pl.when(cond).then(_code(rule)).otherwise(expr)
    return expr


def hetu_parts(col: str = "hetu") -> dict[str, pl.Expr]:
    """Birth date, individual number and sex of identity codes (null where malformed)."""
    c = pl.col(col)
    century = c.str.slice(6, 1).replace_strict(CENTURY, default=None, return_dtype=pl.Int32)
    year = century + c.str.slice(4, 2).cast(pl.Int32, strict=False)
    birth = pl.concat_str([year.cast(pl.String).str.zfill(4), c.str.slice(2, 2), c.str.slice(0, 2)],
                          separator="-").str.to_date("%Y-%m-%d", strict=False)
    individual = c.str.slice(7, 3).cast(pl.Int32, strict=False)
    return {"birth_date": birth, "individual": individual,
            "sex": pl.when(individual % 2 == 1).then(pl.lit("M")).otherwise(pl.lit("F"))}


def _hetu(col: Column, ctx: CheckContext) -> pl.Expr:
    c = pl.col(col.name)
    shape = c.str.contains(r"^[0-9]{6}.[0-9]{3}.$") & (c.str.len_chars() == 11)
    parts = hetu_parts(col.name)
    sign_ok = c.str.slice(6, 1).is_in(list(CENTURY))
    digits = (c.str.slice(0, 6) + c.str.slice(7, 3)).cast(pl.Int64, strict=False)
    check = (digits % 31).replace_strict(dict(enumerate(CHECK_ALPHABET)), default=None, return_dtype=pl.String)
    conditions = [
        (c == "", "hetu_missing"),
        (~shape, "hetu_format"),
        (~sign_ok, "hetu_century_sign"),
        (parts["birth_date"].is_null(), "hetu_date"),
        (parts["individual"] < 2, "hetu_individual_number"),
    ]
    if ctx.require_synthetic_hetu:
        conditions.append((~parts["individual"].is_between(SYNTHETIC_INDIVIDUAL.start, SYNTHETIC_INDIVIDUAL.stop - 1),
                           "hetu_not_synthetic"))
    conditions.append((c.str.slice(10, 1) != check, "hetu_check_character"))
    return _first(conditions)


def _int_value(name: str) -> pl.Expr:
    return pl.col(name).str.strip_prefix("+").cast(pl.Int64, strict=False)


def _int(col: Column, ctx: CheckContext) -> pl.Expr:
    c = pl.col(col.name)
    value = _int_value(col.name)
    in_domain = pl.lit(True)
    if col.allowed is not None:
        in_domain = in_domain & value.is_in(list(col.allowed))
    if col.minimum is not None:
        in_domain = in_domain & (value >= col.minimum)
    if col.maximum is not None:
        in_domain = in_domain & (value <= col.maximum)
    conditions = []
    if col.required:
        conditions.append((c == "", col.rule_missing))
    else:
        in_domain = in_domain | (c == "")
    typed = c.str.contains(_full(INT_PATTERN.pattern)) | (c == "")
    conditions += [(~typed, f"{col.name}_type"), (~in_domain, f"{col.name}_range")]
    return _first(conditions)


def cents(name: str) -> pl.Expr:
    """A decimal-comma amount as integer cents (null if it is not one)."""
    c = pl.col(name)
    sign = pl.when(c.str.starts_with("-")).then(-1).otherwise(1)
    body = c.str.strip_prefix("-").str.strip_prefix("+")
    whole = body.str.extract(r"^([0-9]+)", 1).cast(pl.Int64, strict=False)
    frac = body.str.extract(r",([0-9]{1,2})$", 1).fill_null("0").str.pad_end(2, "0").cast(pl.Int64, strict=False)
    return sign * (whole * 100 + frac)


def _decimal(col: Column, ctx: CheckContext) -> pl.Expr:
    c = pl.col(col.name)
    typed = c.str.contains(_full(DECIMAL_PATTERN.pattern))
    value = cents(col.name)
    in_range = (value >= 0) & (value < int(MAX_EUR) * 100)
    return _first([(c == "", col.rule_missing), (~typed, f"{col.name}_type"), (~in_range, f"{col.name}_range")])


def _text(col: Column, ctx: CheckContext) -> pl.Expr:
    c = pl.col(col.name)
    return _first([(c == "", col.rule_missing)]) if col.required else pl.lit(None, dtype=pl.Int32)


def _code3(col: Column, ctx: CheckContext) -> pl.Expr:
    c = pl.col(col.name)
    conditions = [
        (c == "", "kuntanumero_missing"),
        (~c.str.contains(r"^[0-9]{3}$"), "kuntanumero_format"),
        (~c.is_in(sorted(ctx.municipalities)), "kuntanumero_unknown"),
    ]
    if ctx.file_kuntanumero is not None:
        conditions.append((c != ctx.file_kuntanumero, "kuntanumero_file_mismatch"))
    return _first(conditions)


def _yyyymm(col: Column, ctx: CheckContext) -> pl.Expr:
    c = pl.col(col.name)
    conditions = [
        (c == "", col.rule_missing),
        (~c.str.contains(_full(YYYYMM_PATTERN.pattern)), "tilastokuukausi_format"),
        ((c < FIRST_MONTH) | (c > ctx.today.strftime("%Y%m")), "tilastokuukausi_range"),
    ]
    if ctx.file_month is not None:
        conditions.append((c != ctx.file_month, "month_mismatch"))
    return _first(conditions)


def _date(col: Column, ctx: CheckContext) -> pl.Expr:
    c = pl.col(col.name)
    value = c.str.to_date("%Y-%m-%d", strict=False)
    conditions = [
        (c == "", col.rule_missing),
        (~c.str.contains(_full(DATE_PATTERN.pattern)) | value.is_null(), "arviointipvm_format"),
        ((value < FIRST_ASSESSMENT_DATE) | (value > ctx.today), "arviointipvm_range"),
    ]
    if ctx.file_year is not None:
        conditions.append((value.dt.year() != ctx.file_year, "year_mismatch"))
    return _first(conditions)


def _domain(col: Column, ctx: CheckContext) -> pl.Expr:
    c = pl.col(col.name)
    return _first([(c == "", col.rule_missing), (~c.is_in(list(GOAL_DOMAINS)), "tavoitealue_unknown")])


def _factors(col: Column, ctx: CheckContext) -> pl.Expr:
    c = pl.col(col.name)
    items_ok = c.str.split("|").list.eval(pl.element().str.contains(_full(FACTOR_PATTERN.pattern))).list.all()
    return _first([((c != "") & ~items_ok, "tilannetekijat_format")])


_BUILDERS = {"hetu": _hetu, "int": _int, "decimal": _decimal, "text": _text, "codes": _text, "code3": _code3,
             "yyyymm": _yyyymm, "date": _date, "domain": _domain, "factors": _factors}


def broken_rules(frame: pl.DataFrame, extract: str, ctx: CheckContext) -> pl.DataFrame:
    """``frame`` with ``rule`` (first broken rule or null) and ``rules`` (all of them, in precedence order)."""
    columns = CONTRACT_COLUMNS[extract]
    per_column = [_BUILDERS[col.kind](col, ctx).alias(f"_r_{col.name}") for col in columns]
    malformed = pl.when(pl.col("_malformed")).then(_code("row_malformed")).otherwise(None)
    out = frame.with_columns([e for e in per_column])
    names = [f"_r_{col.name}" for col in columns]
    out = out.with_columns(
        pl.when(pl.col("_malformed")).then(pl.concat_list([malformed]))
        .otherwise(pl.concat_list([pl.col(n) for n in names]).list.drop_nulls().list.sort())
        .alias("_codes")
    )
    if extract == "avain":
        out = out.with_columns(_cross_rules().alias("_cross"))
        out = out.with_columns(
            pl.when((pl.col("_codes").list.len() == 0) & pl.col("_cross").is_not_null())
            .then(pl.concat_list([pl.col("_cross")]))
            .otherwise(pl.col("_codes")).alias("_codes")
        )
        out = out.drop("_cross")
    out = out.with_columns(pl.col("_codes").list.first().alias("_rule")).drop(names)
    out = out.with_columns(
        pl.col("_rule").replace_strict(RULE_OF, default=None, return_dtype=pl.String).alias("rule"),
        pl.col("_codes").list.eval(pl.element().replace_strict(RULE_OF, default=None, return_dtype=pl.String))
        .alias("rules"),
    ).drop("_rule", "_codes")
    return set_rules(out, extract)


def _cross_rules() -> pl.Expr:
    kerta = _int_value("arviointikerta")
    score_empty = pl.col("tavoitteen_saavutus") == ""
    return (pl.when((kerta == 0) & ~score_empty).then(_code("tavoitteen_saavutus_at_baseline"))
            .when((kerta > 0) & score_empty).then(_code("tavoitteen_saavutus_missing"))
            .otherwise(None))


def set_rules(frame: pl.DataFrame, extract: str) -> pl.DataFrame:
    """Rules over several rows, among the rows that pass the row rules: a duplicated key, too many goals."""
    valid = pl.col("rule").is_null()
    key = list(KEYS[extract])
    dup = valid & (pl.len().over(key + ["_valid"]) > 1)
    out = frame.with_columns(valid.alias("_valid"))
    out = out.with_columns(pl.when(dup).then(pl.lit("duplicate_key")).otherwise(pl.col("rule")).alias("rule"))
    if extract == "avain":
        still = pl.col("rule").is_null()
        out = out.with_columns(still.alias("_valid"))
        many = still & (pl.len().over(["hetu", "arviointipvm", "_valid"]) > 3)
        out = out.with_columns(
            pl.when(many).then(pl.lit("assessment_too_many_goals")).otherwise(pl.col("rule")).alias("rule"))
    out = out.with_columns(
        pl.when(pl.col("rule").is_not_null() & (pl.col("rules").list.len() == 0))
        .then(pl.concat_list([pl.col("rule")])).otherwise(pl.col("rules")).alias("rules")
    )
    return out.drop("_valid")


def today() -> dt.date:
    """Today's date (the upper bound of month and date ranges)."""
    return dt.date.today()
