"""The contract's row and set rules, vectorised over a frame of raw text fields.

Each column's checks are built from its :class:`~schemas.columns.Column` spec
(kind, domain, rules), the same spec the pydantic row models are built from, so
there is one source of truth; ``tests/pipeline/load/test_properties.py`` shows on
generated rows that :func:`broken_rules` and :func:`schemas.rows.explain` agree
row for row. Every row gets the code of the first rule it breaks (in the
precedence of :data:`schemas.rules.PRECEDENCE`) or null, and the list of all
the rules it breaks.

Speed: nearly every delivered row is valid, so a row is first tested against
cheap sufficient conditions (a canonical value of a small domain, one regular
expression for an amount, equality with the file's month); only the rows that
fail them get the full rule expressions. Identity codes are checked once per
distinct code (:class:`IdentityCodes`), not once per row: a person appears in
dozens of monthly files.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa

from schemas.columns import (
    CODE3_PATTERN,
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

if TYPE_CHECKING:
    from pipeline.pseudonym import Pseudonymiser

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
    return hetu_rule(col.name, require_synthetic=ctx.require_synthetic_hetu)


def hetu_rule(name: str = "hetu", *, require_synthetic: bool = True) -> pl.Expr:
    """The precedence number of the first identity-code rule each code breaks, else null."""
    c = pl.col(name)
    shape = c.str.contains(r"(?s)^[0-9]{6}.[0-9]{3}.$") & (c.str.len_chars() == 11)
    parts = hetu_parts(name)
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
    if require_synthetic:
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


# ------------------------------------------------------------------ the fast path
def _fast_int(col: Column, ctx: CheckContext) -> pl.Expr:
    c = pl.col(col.name)
    domain: list[int] | None = None
    if col.allowed is not None:
        domain = list(col.allowed)
    elif col.minimum is not None and col.maximum is not None and col.maximum - col.minimum <= 100:
        domain = list(range(col.minimum, col.maximum + 1))
    if domain is None:
        return _int(col, ctx).is_null()
    spelled = [str(v) for v in domain] + ([] if col.required else [""])
    return c.is_in(spelled)


def _fast_decimal(col: Column, ctx: CheckContext) -> pl.Expr:
    digits = math.floor(math.log10(MAX_EUR))  # every amount of at most this many whole digits is < MAX_EUR
    return pl.col(col.name).str.contains(f"^[0-9]{{1,{digits}}}(?:,[0-9]{{1,2}})?$")


def _fast_text(col: Column, ctx: CheckContext) -> pl.Expr:
    return pl.col(col.name) != "" if col.required else pl.lit(True)


def _fast_code3(col: Column, ctx: CheckContext) -> pl.Expr:
    known = sorted(m for m in ctx.municipalities if CODE3_PATTERN.fullmatch(m))
    if ctx.file_kuntanumero is not None:
        return pl.col(col.name).is_in(known) & (pl.col(col.name) == ctx.file_kuntanumero)
    return pl.col(col.name).is_in(known)


def _fast_yyyymm(col: Column, ctx: CheckContext) -> pl.Expr:
    month = ctx.file_month
    if isinstance(month, str) and YYYYMM_PATTERN.fullmatch(month) and FIRST_MONTH <= month <= ctx.today.strftime("%Y%m"):
        return pl.col(col.name) == month
    return _yyyymm(col, ctx).is_null()


_FAST = {"int": _fast_int, "decimal": _fast_decimal, "text": _fast_text, "codes": _fast_text, "code3": _fast_code3,
         "yyyymm": _fast_yyyymm}


def _surely_valid(extract: str, ctx: CheckContext) -> pl.Expr:
    """A sufficient condition for a row to break no row rule (``_r_hetu`` from :class:`IdentityCodes`)."""
    cond = ~pl.col("_malformed") & pl.col("hetu").is_not_null() & pl.col("_r_hetu").is_null()
    for col in CONTRACT_COLUMNS[extract]:
        if col.kind == "hetu":
            continue
        fast = _FAST.get(col.kind)
        cond = cond & (fast(col, ctx) if fast is not None else _BUILDERS[col.kind](col, ctx).is_null())
    if extract == "avain":
        cond = cond & _cross_rules().is_null()
    return cond.fill_null(False)


class IdentityCodes:
    """What each distinct identity code of a load yields, worked out once per code.

    Its first broken rule (``_r_hetu``, a precedence number; null = valid), and for
    valid codes the birth date and sex, and with a pseudonymiser the ``person_key``.
    A national delivery repeats each person in dozens of monthly files: this work,
    the keyed hashing above all, is done for the distinct codes only, and a file's
    rows find theirs by one join. Identity codes stay in memory only as long as the
    object lives (one load).
    """

    def __init__(self, *, require_synthetic: bool = True, pseudonymiser: Pseudonymiser | None = None) -> None:
        self.require_synthetic = require_synthetic
        self._pseudonymiser = pseudonymiser
        schema = {"_n": pl.Int64, "_r_hetu": pl.Int32, "_birth_date": pl.Date, "_sex": pl.String}
        if pseudonymiser is not None:  # the 16 bytes of person_key as two big-endian integers: cheap to move
            schema["_key_hi"] = pl.UInt64
            schema["_key_lo"] = pl.UInt64
        schema["_seen"] = pl.Boolean
        self._known = pl.DataFrame(schema=schema)  # one row per distinct code of the shape, by its _n
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"IdentityCodes({self._known.height} codes)"

    def attach(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with ``_r_hetu``, ``_birth_date``, ``_sex`` (and ``person_key`` as ``_key_hi``, ``_key_lo``:
        its first and last 8 bytes, big-endian; see :func:`pipeline.load.person_keys`) of its ``hetu``.

        Only what the codes yield is kept, not the codes themselves. Codes of the
        identity-code shape are looked up by :func:`hetu_number`, an integer that
        spells the code exactly, in one hash join with the codes already known; the
        codes not yet known are described and remembered; the rare codes of another
        shape (all invalid) are described afresh each time.
        """
        numbered = pl.DataFrame([frame["hetu"], hetu_number(frame["hetu"]).alias("_n")])
        payload = [c for c in self._known.columns if c not in ("_n", "_seen")]
        with self._lock:  # files are checked in several threads: a code is described once
            found = numbered.select("_n").join(self._known, on="_n", how="left", maintain_order="left")
            unseen = found["_seen"].is_null() & numbered["_n"].is_not_null()
            if unseen.any():
                rows = unseen.arg_true()
                fresh = self._describe(numbered[rows].unique("_n"))
                self._known = pl.concat([self._known, fresh.with_columns(pl.lit(True).alias("_seen"))],
                                        how="vertical").rechunk()
                filled = numbered[rows].select("_n").join(fresh, on="_n", how="left", maintain_order="left")
                found = found.with_columns(found[c].scatter(rows, filled[c]) for c in payload)
        odd = numbered["_n"].is_null() & numbered["hetu"].is_not_null()
        if odd.any():
            rows = odd.arg_true()
            fresh = self._describe(numbered.filter(odd).with_row_index("_o"), keep="_o")
            found = found.with_columns(found[c].scatter(rows, fresh[c]) for c in payload)
        return frame.with_columns(found.select(payload))

    def _describe(self, codes: pl.DataFrame, keep: str = "_n") -> pl.DataFrame:
        """Rule, birth date, sex (and ``person_key``) of distinct ``codes``, with their ``keep`` column."""
        parts = hetu_parts("hetu")
        valid = pl.col("_r_hetu").is_null()
        out = codes.with_columns(hetu_rule("hetu", require_synthetic=self.require_synthetic).alias("_r_hetu"))
        out = out.with_columns(pl.when(valid).then(parts["birth_date"]).alias("_birth_date"),
                               pl.when(valid).then(parts["sex"]).alias("_sex"))
        if self._pseudonymiser is not None:
            good = out["hetu"].filter(out["_r_hetu"].is_null())
            halves = np.frombuffer(b"".join(self._pseudonymiser.keys_of(good.to_list())), dtype=">u8").reshape(-1, 2)
            keys = pl.DataFrame([good, pl.Series("_key_hi", halves[:, 0].astype(np.uint64)),
                                 pl.Series("_key_lo", halves[:, 1].astype(np.uint64))])
            out = out.join(keys.unique("hetu"), on="hetu", how="left", maintain_order="left")
        return out.select(keep, *(c for c in self._known.columns if c not in ("_n", "_seen")))


def _byte_table(chars: str) -> np.ndarray:
    """A 256-entry table: the index of each byte in ``chars`` (one-byte characters), -1 for the others."""
    table = np.full(256, -1, dtype=np.int64)
    for i, ch in enumerate(chars):
        table[ord(ch)] = i
    return table


_SIGN_OF = _byte_table("".join(CENTURY))
_CHECK_OF = _byte_table(CHECK_ALPHABET)
_DIGIT_PLACES = np.array([0, 1, 2, 3, 4, 5, 7, 8, 9])


def hetu_number(codes: pl.Series) -> pl.Series:
    """An integer that spells each identity code of the shape DDMMYY, sign, NNN, check character exactly
    (null for any other string): the nine digits, then the century sign's and check character's places.

    Worked out on the UTF-8 bytes of the codes, eleven at a time, in numpy.
    """
    arrow = codes.cast(pl.String).to_arrow()
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    arrow = arrow.cast(pa.large_string())
    n = len(arrow)
    offsets = np.frombuffer(arrow.buffers()[1], dtype=np.int64)[arrow.offset: arrow.offset + n + 1]
    data = np.frombuffer(arrow.buffers()[2], dtype=np.uint8) if n and arrow.buffers()[2] is not None \
        else np.zeros(0, dtype=np.uint8)
    shaped = np.diff(offsets) == 11
    if arrow.null_count:
        shaped &= arrow.is_valid().to_numpy(zero_copy_only=False)
    if shaped.all():
        b = data[offsets[0]: offsets[-1]].reshape(-1, 11)
    else:
        b = data[offsets[:-1][shaped, None] + np.arange(11)]
    digits = b[:, _DIGIT_PLACES].astype(np.int64) - ord("0")
    sign, check = _SIGN_OF[b[:, 6]], _CHECK_OF[b[:, 10]]
    ok = ((digits >= 0) & (digits <= 9)).all(axis=1) & (sign >= 0) & (check >= 0)
    value = (digits @ 10 ** np.arange(8, -1, -1, dtype=np.int64) * 16 + sign) * 32 + check
    out = np.full(n, -1, dtype=np.int64)
    out[shaped] = np.where(ok, value, -1)
    return pl.Series(codes.name, out).set(pl.Series(out < 0), None)


# --------------------------------------------------------------------- the rules
@dataclass(frozen=True)
class _ByFile:
    """A :class:`CheckContext` whose file-name values are columns of the frame (several files in one pass)."""

    municipalities: frozenset[str]
    today: dt.date
    require_synthetic_hetu: bool
    file_month: pl.Expr = pl.col("_file_month")
    file_kuntanumero: pl.Expr = pl.col("_file_kuntanumero")
    file_year: pl.Expr = pl.col("_file_year")


def broken_rules_by_file(frames: list[pl.DataFrame], extract: str, contexts: list[CheckContext],
                         identities: IdentityCodes | None = None) -> list[pl.DataFrame]:
    """:func:`broken_rules` of each frame, the frames checked together in one pass.

    Each file's context is spread over its rows; the set rules apply within a
    file. Small files (an AVAIN-style delivery is one per municipality and year)
    cost mostly the fixed price of a pass, so this is the way to check many.
    """
    if len(frames) < 2:
        return [broken_rules(f, extract, c, identities) for f, c in zip(frames, contexts, strict=True)]
    first = contexts[0]
    if any((c.municipalities, c.today, c.require_synthetic_hetu)
           != (first.municipalities, first.today, first.require_synthetic_hetu) for c in contexts):
        raise ValueError("files checked together must share the municipalities, today and the identity-code rule")
    tagged = pl.concat([
        frame.with_columns(pl.lit(i, dtype=pl.Int32).alias("_file"),
                           pl.lit(ctx.file_month, dtype=pl.String).alias("_file_month"),
                           pl.lit(ctx.file_kuntanumero, dtype=pl.String).alias("_file_kuntanumero"),
                           pl.lit(ctx.file_year, dtype=pl.Int32).alias("_file_year"))
        for i, (frame, ctx) in enumerate(zip(frames, contexts, strict=True))], how="vertical")
    by_file = _ByFile(first.municipalities, first.today, first.require_synthetic_hetu)
    checked = broken_rules(tagged, extract, by_file, identities)  # type: ignore[arg-type]
    parts = checked.partition_by("_file", as_dict=True, maintain_order=True)
    helpers = ["_file", "_file_month", "_file_kuntanumero", "_file_year"]
    return [parts[(i,)].drop(helpers) if (i,) in parts else checked.clear().drop(helpers) for i in range(len(frames))]


def broken_rules(frame: pl.DataFrame, extract: str, ctx: CheckContext,
                 identities: IdentityCodes | None = None) -> pl.DataFrame:
    """``frame`` with ``rule`` (first broken rule or null) and ``rules`` (all of them, in precedence order;
    null for valid rows), and the columns :meth:`IdentityCodes.attach` adds.

    ``identities`` carries the identity codes already seen in this load; a fresh one is used if none is given.
    """
    if identities is None:
        identities = IdentityCodes(require_synthetic=ctx.require_synthetic_hetu)
    elif identities.require_synthetic != ctx.require_synthetic_hetu:
        raise ValueError("identities were checked under another require_synthetic_hetu setting")
    out = identities.attach(frame).with_row_index("_i")
    out = out.with_columns(_surely_valid(extract, ctx).alias("_fast"))
    slow = out.filter(~pl.col("_fast"))
    if slow.height:
        out = out.join(_row_rules(slow, extract, ctx), on="_i", how="left", maintain_order="left")
    else:
        out = out.with_columns(pl.lit(None, dtype=pl.String).alias("rule"),
                               pl.lit(None, dtype=pl.List(pl.String)).alias("rules"))
    return set_rules(out.drop("_i", "_fast"), extract)


def _row_rules(frame: pl.DataFrame, extract: str, ctx: CheckContext) -> pl.DataFrame:
    """``_i``, ``rule`` and ``rules`` of rows checked against every row rule in full."""
    columns = CONTRACT_COLUMNS[extract]
    names = [f"_r_{col.name}" for col in columns]
    out = frame.select("_i", "_malformed", *(c.name for c in columns), *(
        _BUILDERS[col.kind](col, ctx).alias(n) for col, n in zip(columns, names, strict=True)))
    codes = pl.concat_list([pl.col(n) for n in names]).list.drop_nulls().list.sort()
    if extract == "avain":
        codes = pl.when(codes.list.len() == 0).then(pl.concat_list([_cross_rules()])).otherwise(codes)
    codes = pl.when(pl.col("_malformed")).then(pl.concat_list([_code("row_malformed")])).otherwise(codes)
    out = out.select("_i", codes.list.drop_nulls().alias("_codes"))
    return out.select(
        "_i",
        pl.col("_codes").list.first().replace_strict(RULE_OF, default=None, return_dtype=pl.String).alias("rule"),
        pl.when(pl.col("_codes").list.len() > 0).then(
            pl.col("_codes").list.eval(pl.element().replace_strict(RULE_OF, default=None, return_dtype=pl.String)))
        .alias("rules"),
    )


def _cross_rules() -> pl.Expr:
    kerta = _int_value("arviointikerta")
    score_empty = pl.col("tavoitteen_saavutus") == ""
    return (pl.when((kerta == 0) & ~score_empty).then(_code("tavoitteen_saavutus_at_baseline"))
            .when((kerta > 0) & score_empty).then(_code("tavoitteen_saavutus_missing"))
            .otherwise(None))


def set_rules(frame: pl.DataFrame, extract: str) -> pl.DataFrame:
    """Rules over several rows, among the rows that pass the row rules: a duplicated key, too many goals."""
    within = ["_file"] if "_file" in frame.columns else []  # files checked together: the rules hold per file
    rows = (frame.select(*within, *KEYS[extract], "rule").with_row_index("_j")
            .filter(pl.col("rule").is_null()).drop("rule"))
    marked: dict[str, pl.Series] = {}
    # a duplicated key has a duplicated identity code: the few such rows are compared on the whole key
    shared = rows.filter(pl.col("hetu").is_duplicated())
    dup = shared.filter(pl.struct([*within, *KEYS[extract]]).is_duplicated())["_j"]
    if dup.len():
        marked["duplicate_key"] = dup
    if extract == "avain":
        rest = rows.filter(~pl.col("_j").is_in(dup.implode()))
        many = rest.filter(pl.len().over(*within, "hetu", "arviointipvm") > 3)["_j"]
        if many.len():
            marked["assessment_too_many_goals"] = many
    if not marked:
        return frame
    out = frame.with_row_index("_j")
    for rule, where in marked.items():
        hit = pl.col("_j").is_in(where.implode())
        out = out.with_columns(pl.when(hit).then(pl.lit(rule)).otherwise(pl.col("rule")).alias("rule"),
                               pl.when(hit).then(pl.concat_list([pl.lit(rule)])).otherwise(pl.col("rules"))
                               .alias("rules"))
    return out.drop("_j")


def today() -> dt.date:
    """Today's date (the upper bound of month and date ranges)."""
    return dt.date.today()
