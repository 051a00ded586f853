"""Properties of the loader on generated input.

* The vectorised checks and the row-level pydantic models are two independent
  implementations of the same contract: on rows mixing valid values with
  near-misses of every rule they agree on validity, on the first broken rule and
  on the full list of broken rules; the set rules agree with a plain Python count.
* Any valid frame written as contract CSV, with any mix of BOM, CRLF, quoting and
  column order, reads back exactly.
* Arbitrary bytes in a ``.csv`` end in a file rule or in rows that are all
  accounted for (rows in = staged + quarantined), never in an unexpected exception.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any
from unittest.mock import patch

import duckdb
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.load import check_file, load_delivery
from pipeline.load.checks import IdentityCodes, broken_rules, hetu_number
from pipeline.load import files
from pipeline.load.files import FileRuleBroken, classify, read_rows
from pipeline.pseudonym import DEMO_KEY, Pseudonymiser
from schemas.columns import AVAIN_COLUMNS, GOAL_DOMAINS, KELA_COLUMNS, KEYS, CheckContext
from schemas.hetu import CENTURY, CHECK_ALPHABET
from schemas.rows import explain

MUNICIPALITIES = frozenset({"091", "211", "837", "980"})
TODAY = dt.date(2026, 11, 1)
KELA_CTX = CheckContext(municipalities=MUNICIPALITIES, file_month="201803", today=TODAY)
AVAIN_CTX = CheckContext(municipalities=MUNICIPALITIES, file_kuntanumero="837", file_year=2018, today=TODAY)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])

# ------------------------------------------------------------------ field values
JUNK = st.sampled_from(["", " ", "\t", "x", "NaN", "inf", "-", "+", "1e3", "١", "\n", "null", "ä", ";"])


def _pad(value: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value with surrounding whitespace: the contract does not trim."""
    return st.tuples(value, st.sampled_from([" ", "\t", "\n", "\r", "\u00a0"]), st.booleans()).map(
        lambda t: t[1] + t[0] if t[2] else t[0] + t[1])


@st.composite
def hetu(draw: st.DrawFn) -> str:
    """A valid synthetic identity code, or a near-miss of one of its rules."""
    birth = draw(st.dates(dt.date(1890, 1, 1), dt.date(2005, 12, 31)))
    sign = draw(st.sampled_from("+" if birth.year < 1900 else "-YXWVU" if birth.year < 2000 else "ABCDEF"))
    individual = draw(st.one_of(st.integers(900, 999), st.integers(0, 1100)))
    zzz = f"{individual:03d}"[-3:]
    ddmmyy = birth.strftime("%d%m%y")
    check = CHECK_ALPHABET[int(ddmmyy + zzz) % 31]
    code = ddmmyy + sign + zzz + check
    miss = draw(st.sampled_from(["none", "none", "none", "check", "sign", "date", "lower", "short", "long",
                                 "pad", "empty", "junk", "digit_sign"]))
    if miss == "check":
        code = code[:10] + draw(st.sampled_from(CHECK_ALPHABET + "GIOQZ"))
    elif miss == "sign":
        code = code[:6] + draw(st.sampled_from("GHZ*/ +a\n\r")) + code[7:]
    elif miss == "date":
        code = draw(st.sampled_from(["3002", "3102", "0013", "0001", "3204", "2902"])) + code[4:]
    elif miss == "lower":
        code = code.lower()
    elif miss == "short":
        code = code[: draw(st.integers(0, 10))]
    elif miss == "long":
        code = code + draw(st.sampled_from(["P", "0", "\n", " "]))
    elif miss == "pad":
        code = draw(_pad(st.just(code)))
    elif miss == "empty":
        code = ""
    elif miss == "junk":
        code = draw(st.text(max_size=12))
    elif miss == "digit_sign":
        code = code[:6] + "1" + code[7:]
    return code


def integer(valid: list[int]) -> st.SearchStrategy[str]:
    """An integer field: a valid value in canonical or odd-but-valid spelling, out of range, or not an integer."""
    lo, hi = min(valid), max(valid)
    return st.one_of(
        st.sampled_from(valid).map(str),
        st.sampled_from(valid).map(lambda v: f"+{v}"),
        st.sampled_from(valid).map(lambda v: f"0{v}"),
        st.sampled_from([lo - 1, hi + 1, -1, 100, 10**9 - 1, 10**9, 10**12]).map(str),
        st.sampled_from([f"{lo},0", f"{hi}.0", "-0", "+0", "00", "0x1", "1_0", "٣"]),
        _pad(st.sampled_from(valid).map(str)),
        JUNK,
    )


def amount() -> st.SearchStrategy[str]:
    """A euro amount with a decimal comma, or a near-miss: negative, NaN, huge, a point, 3 decimals."""
    cents = st.integers(0, 10_000_000 - 1)
    return st.one_of(
        cents.map(lambda c: f"{c // 100},{c % 100:02d}"),
        cents.map(lambda c: f"{c // 100}"),
        cents.map(lambda c: f"{c // 100},{c % 100 // 10}"),
        cents.map(lambda c: f"-{c // 100 + 1},{c % 100:02d}"),
        cents.map(lambda c: f"{c // 100}.{c % 100:02d}"),
        cents.map(lambda c: f"{c // 100},{c % 1000:03d}"),
        st.sampled_from(["100000,00", "99999,99", "100000", "-0,00", "+12,5", ",5", "5,", "1 000,00",
                         "NaN", "nan", "Infinity", "-inf", "1e5", "999999999999,99", "9999999999999",
                         "123456789012,00", "0,00"]),
        _pad(cents.map(lambda c: f"{c // 100},{c % 100:02d}")),
        JUNK,
    )


def municipality(file_code: str | None = None) -> st.SearchStrategy[str]:
    """A kuntanumero: known, unknown, the wrong length or not digits."""
    known = sorted(MUNICIPALITIES)
    common = [file_code] * 6 if file_code else known
    return st.one_of(st.sampled_from(common), st.sampled_from(known),
                     st.sampled_from(["999", "000", "91", "0911", "8a7", "", "83 ", "８３７"]),
                     _pad(st.sampled_from(known)))


def month() -> st.SearchStrategy[str]:
    """tilastokuukausi: the file's month mostly, else another month or a malformed one."""
    return st.one_of(st.just("201803"), st.just("201803"),
                     st.sampled_from(["201804", "201612", "201701", "201713", "201800", "2018-03", "18-03",
                                      "209901", "202611", "202612", "", "2018031"]),
                     _pad(st.just("201803")), JUNK)


def goal_domain() -> st.SearchStrategy[str]:
    """tavoitealue: a domain code, or one in the wrong case, unknown or empty."""
    return st.one_of(st.sampled_from(GOAL_DOMAINS), st.sampled_from(GOAL_DOMAINS),
                     st.sampled_from(["toimeentulo", "TYO", "", "ASUMINEN ", "MUU"]))


def factors() -> st.SearchStrategy[str]:
    """tilannetekijat: empty or CODE:+|CODE:- items, or a near-miss."""
    item = st.tuples(st.sampled_from(GOAL_DOMAINS), st.sampled_from("+-")).map(lambda t: f"{t[0]}:{t[1]}")
    good = st.lists(item, min_size=1, max_size=3).map("|".join)
    return st.one_of(st.just(""), good, good.map(lambda s: s + "|"), good.map(lambda s: s.replace(":", "=", 1)),
                     st.sampled_from(["ASUMINEN:", "ASUMINEN:0", "asuminen:+", "|", "MUU:+", "ASUMINEN:+ "]))


def assessment_date() -> st.SearchStrategy[str]:
    """arviointipvm: a date of the file's year, of another year, impossible, or in another format."""
    return st.one_of(
        st.dates(dt.date(2018, 1, 1), dt.date(2018, 12, 31)).map(dt.date.isoformat),
        st.dates(dt.date(2018, 1, 1), dt.date(2018, 1, 3)).map(dt.date.isoformat),
        st.dates(dt.date(2015, 1, 1), dt.date(2030, 12, 31)).map(dt.date.isoformat),
        st.sampled_from(["2018-02-30", "2018-13-01", "2018-00-10", "14.3.2018", "2018-3-14", "20180314",
                         "2018-03-14T00:00", "", "2016-12-31", "2017-01-01"]),
        _pad(st.just("2018-03-14")),
    )


def kela_row() -> st.SearchStrategy[dict[str, str]]:
    """A raw Kela-style row whose every field is valid or a near-miss."""
    return st.fixed_dictionaries({
        "hetu": hetu(),
        "kotitalous_id": st.one_of(st.just("KT0001"), st.just(""), st.text(max_size=8)),
        "kuntanumero": municipality(),
        "tilastokuukausi": month(),
        "kotitaloustyyppi": integer([1, 2, 3, 4, 5]),
        "tyomarkkina_asema": integer([1, 2, 3, 4, 5, 6]),
        "perusosa_eur": amount(),
        "myonnetty_eur": amount(),
        "perusosan_alennus_pct": integer([0, 20, 40]),
        "ohjaus_sosiaalityohon": integer([0, 1]),
    })


def avain_row() -> st.SearchStrategy[dict[str, str]]:
    """A raw AVAIN-style row whose every field is valid or a near-miss."""
    return st.fixed_dictionaries({
        "hetu": hetu(),
        "kuntanumero": municipality("837"),
        "arviointipvm": assessment_date(),
        "arviointikerta": integer([0, 1, 2, 3, 7]),
        "tavoitealue": goal_domain(),
        "tilannearvio": integer(list(range(11))),
        "tavoitteen_saavutus": st.one_of(st.just(""), st.just(""), integer([1, 2, 3, 4, 5])),
        "tilannetekijat": factors(),
        "palvelut": st.one_of(st.just(""), st.text(max_size=10)),
        "menetelmat": st.one_of(st.just(""), st.just("YKSILOTYO|RYHMA")),
        "asiakas_lasna": integer([0, 1]),
    })


# ------------------------------------------------- vectorised checks = pydantic models
def _frame(rows: list[dict[str, str]], extract: str) -> pl.DataFrame:
    columns = KELA_COLUMNS if extract == "kela" else AVAIN_COLUMNS
    data: dict[str, Any] = {c.name: pl.Series(c.name, [r[c.name] for r in rows], dtype=pl.String) for c in columns}
    data["source_line"] = pl.Series(range(2, len(rows) + 2), dtype=pl.Int64)
    data["_malformed"] = pl.Series([False] * len(rows), dtype=pl.Boolean)
    return pl.DataFrame(data)


def _expected(rows: list[dict[str, str]], extract: str, ctx: CheckContext) -> list[list[str]]:
    """Every row's broken rules by the pydantic models, then the set rules counted in plain Python."""
    explained = [explain(extract, r, ctx) for r in rows]  # type: ignore[arg-type]
    key = KEYS[extract]
    counts = Counter(tuple(r[k] for k in key) for r, e in zip(rows, explained, strict=True) if not e)
    for i, r in enumerate(rows):
        if not explained[i] and counts[tuple(r[k] for k in key)] > 1:
            explained[i] = ["duplicate_key"]
    if extract == "avain":
        goals = Counter((r["hetu"], r["arviointipvm"]) for r, e in zip(rows, explained, strict=True) if not e)
        for i, r in enumerate(rows):
            if not explained[i] and goals[(r["hetu"], r["arviointipvm"])] > 3:
                explained[i] = ["assessment_too_many_goals"]
    return explained


def _agree(rows: list[dict[str, str]], extract: str, ctx: CheckContext) -> None:
    checked = broken_rules(_frame(rows, extract), extract, ctx).sort("source_line")
    expected = _expected(rows, extract, ctx)
    for row, (rule, rules), want in zip(rows, checked.select("rule", "rules").iter_rows(), expected, strict=True):
        assert rule == (want[0] if want else None), row
        assert list(rules or []) == want, row


@FAST
@given(st.lists(kela_row(), min_size=1, max_size=12))
def test_kela_checks_agree_with_row_models(rows: list[dict[str, str]]) -> None:
    _agree(rows, "kela", KELA_CTX)


@st.composite
def valid_kela_row(draw: st.DrawFn) -> dict[str, str]:
    """A valid Kela-style row, its numbers spelled in any way the contract allows (sign, leading zeros)."""
    birth = draw(st.dates(dt.date(1900, 1, 1), dt.date(2005, 12, 31)))
    zzz = str(draw(st.integers(900, 999)))
    ddmmyy = birth.strftime("%d%m%y")
    code = ddmmyy + ("-" if birth.year < 2000 else "A") + zzz + CHECK_ALPHABET[int(ddmmyy + zzz) % 31]

    def spelled(value: int) -> str:
        return draw(st.sampled_from(["", "+"])) + "0" * draw(st.integers(0, 2)) + str(value)

    def amount() -> str:
        cents = draw(st.sampled_from(["", ",0", ",5", ",05", ",99", ",10"]))
        return spelled(draw(st.integers(0, 99_999))) + cents

    return {"hetu": code, "kotitalous_id": "KT1", "kuntanumero": "837", "tilastokuukausi": "201803",
            "kotitaloustyyppi": spelled(draw(st.integers(1, 5))), "tyomarkkina_asema": spelled(draw(st.integers(1, 6))),
            "perusosa_eur": amount(), "myonnetty_eur": amount(),
            "perusosan_alennus_pct": spelled(draw(st.sampled_from([0, 20, 40]))),
            "ohjaus_sosiaalityohon": spelled(draw(st.integers(0, 1)))}


@FAST
@given(st.lists(valid_kela_row(), min_size=1, max_size=40, unique_by=lambda r: r["hetu"]))
def test_valid_kela_rows_typed_by_polars_as_duckdb_casts_them(rows: list[dict[str, str]]) -> None:
    """The loader types Kela-style values in polars: for every valid spelling, what DuckDB's casts give."""
    from pipeline.load import KELA_TYPED, staging_types

    checked = broken_rules(_frame(rows, "kela"), "kela", KELA_CTX)
    assert checked["rule"].null_count() == len(rows)
    valid = staging_types("kela", checked)
    columns = list(KELA_TYPED)
    con = duckdb.connect()
    con.register("v", valid.to_arrow())
    cast = {c: f"replace({c}, ',', '.')::decimal(12, 2)" if "eur" in c else f"{c}::tinyint" for c in columns}
    sql = (f"select {', '.join(cast.values())}, strptime(tilastokuukausi, '%Y%m')::date, year(_birth_date) from v")
    by_duckdb = con.execute(sql).fetchall()
    by_polars = con.execute(f"select {', '.join(f'_t_{c}' for c in columns)}, _month, _birth_year from v").fetchall()
    assert by_polars == by_duckdb
    assert all(v is not None for row in by_polars for v in row)


@FAST
@given(st.lists(kela_row(), min_size=1, max_size=6))
def test_kela_checks_agree_when_real_identity_codes_are_allowed(rows: list[dict[str, str]]) -> None:
    ctx = CheckContext(municipalities=MUNICIPALITIES, file_month="201803", today=TODAY, require_synthetic_hetu=False)
    _agree(rows, "kela", ctx)


@FAST
@given(st.lists(avain_row(), min_size=1, max_size=12))
def test_avain_checks_agree_with_row_models(rows: list[dict[str, str]]) -> None:
    _agree(rows, "avain", AVAIN_CTX)


@FAST
@given(st.lists(avain_row(), min_size=1, max_size=8), st.data())
def test_avain_set_rules_agree_on_repeated_assessments(rows: list[dict[str, str]], data: st.DataObject) -> None:
    """Rows of one person and date, so that duplicate keys and too many goals actually happen."""
    person = data.draw(hetu())
    day = data.draw(st.sampled_from(["2018-03-14", "2018-03-15"]))
    _agree([{**r, "hetu": person, "arviointipvm": day} for r in rows], "avain", AVAIN_CTX)


# ------------------------------------------------------------------------ CSV reading
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\ufeff\x00"), max_size=12)
PLAIN_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='\r\n\ufeff\x00;"'), max_size=12)


@st.composite
def contract_csv(draw: st.DrawFn) -> tuple[bytes, list[dict[str, str]]]:
    """A Kela-style CSV with random quirks, and the rows it holds."""
    names = [c.name for c in KELA_COLUMNS]
    extra = draw(st.lists(st.sampled_from(["lisatieto", "huom"]), unique=True, max_size=2))
    header = draw(st.permutations(names + extra))
    quote_mode = draw(st.sampled_from(["none", "all", "some"]))
    text = SAFE_TEXT if quote_mode != "none" else PLAIN_TEXT
    rows = draw(st.lists(st.fixed_dictionaries({h: text for h in header}), max_size=15))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    mixed_newlines = draw(st.booleans())

    def cell(value: str) -> str:
        must = any(ch in value for ch in ';"')
        if must or quote_mode == "all" or (quote_mode == "some" and draw(st.booleans())):
            return '"' + value.replace('"', '""') + '"'
        return value

    lines = [";".join(cell(h) for h in header)] + [";".join(cell(r[h]) for h in header) for r in rows]
    ends = [draw(st.sampled_from(["\n", "\r\n"])) if mixed_newlines else newline for _ in lines]
    body = "".join(line + end for line, end in zip(lines, ends, strict=True))
    if not draw(st.booleans()):
        body = body[: -len(ends[-1])]
    if draw(st.booleans()):
        body = "\ufeff" + body
    return body.encode("utf-8"), [{n: r[n] for n in names} for r in rows]


def _near_hetu() -> st.SearchStrategy[str]:
    """An identity code with one character replaced (a digit, a letter, a sign, a two-byte letter...)."""
    return st.tuples(hetu(), st.integers(0, 10), st.sampled_from("05aAYZ+-;é\u00e4 ")).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1:])


CODES = st.one_of(hetu(), _near_hetu(), JUNK)


@FAST
@given(st.lists(CODES, min_size=1, max_size=10), st.lists(CODES, max_size=10))
def test_identity_codes_remembered_across_files_equal_fresh_ones(first: list[str], second: list[str]) -> None:
    """What a code yields does not depend on the files seen before it in the load, and the
    integer a code is looked up by spells it exactly (two codes share one only if they are equal)."""
    shared = IdentityCodes(pseudonymiser=Pseudonymiser(DEMO_KEY))
    for codes in (first, second, first + second):
        frame = pl.DataFrame({"hetu": codes}, schema={"hetu": pl.String})
        fresh = IdentityCodes(pseudonymiser=Pseudonymiser(DEMO_KEY)).attach(frame)
        assert shared.attach(frame).equals(fresh)
    codes = pl.DataFrame({"hetu": first + second}, schema={"hetu": pl.String})
    numbers = codes.with_columns(hetu_number(codes["hetu"]).alias("n"))
    assert numbers["n"].equals(codes.select(_hetu_number_expr("hetu").alias("n"))["n"])
    assert numbers.drop_nulls().unique().group_by("n").len()["len"].max() in (None, 1)


def _hetu_number_expr(name: str) -> pl.Expr:
    """:func:`hetu_number` written independently, as polars string expressions."""
    c = pl.col(name)
    shape = c.str.contains(r"^[0-9]{6}.[0-9]{3}.$") & (c.str.len_bytes() == 11)
    sign = c.str.slice(6, 1).replace_strict({s: i for i, s in enumerate(CENTURY)}, default=None, return_dtype=pl.Int64)
    check = c.str.slice(10, 1).replace_strict({a: i for i, a in enumerate(CHECK_ALPHABET)}, default=None,
                                              return_dtype=pl.Int64)
    digits = (c.str.slice(0, 6) + c.str.slice(7, 3)).cast(pl.Int64, strict=False)
    return pl.when(shape).then((digits * 16 + sign) * 32 + check)


@SLOW
@given(contract_csv())
def test_valid_csv_reads_back_exactly(tmp_path_factory, case: tuple[bytes, list[dict[str, str]]]) -> None:
    data, rows = case
    path = tmp_path_factory.mktemp("csv") / "toimeentulotuki_201803.csv"
    path.write_bytes(data)
    raw = read_rows(classify(path))
    names = [c.name for c in KELA_COLUMNS]
    assert not raw.frame["_malformed"].any()
    assert raw.frame["source_line"].to_list() == list(range(2, len(rows) + 2))
    assert raw.frame.select(names).to_dicts() == rows


def _read_line_by_line(path: Path) -> pl.DataFrame:
    """The rows as the line-by-line reader alone gives them (polars' CSV reader not tried)."""
    with patch.object(files, "_read_bulk", lambda *_: None):
        return read_rows(classify(path)).frame


@SLOW
@given(contract_csv(), st.lists(st.sampled_from(["", ";", '"', '""', "x;y", "\r", "a\rb", " "]), max_size=6),
       st.randoms(use_true_random=False))
def test_bulk_reader_equals_line_by_line_reader(tmp_path_factory, case: tuple[bytes, list[dict[str, str]]],
                                                 junk: list[str], rnd: Any) -> None:
    """Lines with too few or too many fields, stray quotes or CRs, among valid ones: both readers agree."""
    data, _ = case
    lines = data.split(b"\n")
    for bad in junk:
        lines.insert(rnd.randint(1, len(lines)), bad.encode())
    path = tmp_path_factory.mktemp("bulk") / "toimeentulotuki_201803.csv"
    path.write_bytes(b"\n".join(lines))
    try:
        expected = _read_line_by_line(path)
    except FileRuleBroken as broken:  # then the vectorised reader breaks the same file rule
        with pytest.raises(FileRuleBroken) as raised:
            read_rows(classify(path))
        assert raised.value.rule == broken.rule
        return
    assert read_rows(classify(path)).frame.equals(expected)


GARBAGE = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda s: s.encode("utf-8")),
    st.lists(st.sampled_from([b";", b'"', b"\n", b"\r\n", b"\r", b"\xef\xbb\xbf", b"\x00", b"\xff", b"010190-900P",
                              b"837", b"201803", b"1", b"487,89", b" "]), max_size=60).map(b"".join),
)
KELA_HEADER = ";".join(c.name for c in KELA_COLUMNS).encode() + b"\n"


def _accounted(result: Any) -> None:
    if result.file_rule is None:
        assert result.rows_in == result.rows_staged + result.rows_quarantined
        assert result.rows_quarantined == len(result.violations)
    else:
        assert result.detail and "\n" not in result.detail


@SLOW
@given(st.booleans(), GARBAGE)
def test_garbage_csv_is_a_file_rule_or_accounted_rows(tmp_path_factory, config, with_header: bool,
                                                       body: bytes) -> None:
    path = tmp_path_factory.mktemp("garbage") / "toimeentulotuki_201803.csv"
    path.write_bytes((KELA_HEADER if with_header else b"") + body)
    result, checked = check_file(classify(path), config)
    _accounted(result)
    if checked is not None:
        assert checked.height == result.rows_in


@SLOW
@given(GARBAGE, GARBAGE)
def test_garbage_delivery_loads_with_rows_accounted(tmp_path_factory, config, kela: bytes, avain: bytes) -> None:
    directory: Path = tmp_path_factory.mktemp("delivery")
    (directory / "toimeentulotuki_201803.csv").write_bytes(KELA_HEADER + kela)
    avain_header = ";".join(c.name for c in AVAIN_COLUMNS).encode() + b"\r\n"
    (directory / "avain_837_2018.csv").write_bytes(avain_header + avain)
    con = duckdb.connect()
    try:
        report = load_delivery(con, kela_dir=directory, avain_dir=directory, key=DEMO_KEY, config=config, run_id="p")
        for result in report.files:
            _accounted(result)
        manifest = con.execute("select file_name, rows_in, rows_staged, rows_quarantined "
                               "from meta.loaded_files").fetchall()
        for name, rows_in, staged, quarantined in manifest:
            table = "kela_income_support" if name.startswith("toimeentulotuki") else "avain_assessments"
            in_staging = con.execute(f"select count(*) from staging.{table} where source_file = ?",
                                     [name]).fetchall()[0][0]
            in_quarantine = con.execute(f"select count(*) from quarantine.{table} where source_file = ?",
                                        [name]).fetchall()[0][0]
            assert (in_staging, in_quarantine) == (staged, quarantined)
            assert rows_in == staged + quarantined
    finally:
        con.close()
