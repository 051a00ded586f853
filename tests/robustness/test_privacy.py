"""No identity code and no pseudonymisation key in anything a run leaves behind; no small cell published.

After the session's one evaluation of the committed sample (``evaluated_sample``: the Prefect flow
under the test harness, with a random key), every text column of every table in the DuckDB file,
every file of the HTML report and of the Data Docs, the run's Prefect artifacts and flow parameters,
and the log output are scanned for anything shaped like an identity code and for the key (as given,
and in hex). The scanners are also shown to find a planted code and a planted key, so a clean scan
means something. Disclosure: every published cell of ``panel.municipality_month`` and of the report's
tables rests on at least the configured number of persons, or shows no number.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from html.parser import HTMLParser

import duckdb
import pytest

from pipeline import db
from schemas.hetu import HETU_PATTERN

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"

HETU_ANYWHERE = re.compile(HETU_PATTERN.strip("^$"))
PLANTED_CODE = "010190-900P"
"""A well-formed synthetic identity code (its check character is right) for the negative controls."""
INLINE_IMAGE = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+")
"""Inline PNG plots: base64 text, where an identity-code shape can occur by chance; pixels carry no text."""
SUPPRESSED_TEXT = ("suppressed", "–", "-", "")


# ------------------------------------------------------------------ scanners
def key_forms(key: bytes) -> dict[str, str]:
    """The key as it is given (the environment value) and hex-encoded, lower-cased for a case-blind search."""
    return {"raw": key.decode("utf-8").lower(), "hex": key.hex()}


def text_leaks(text: str, key: bytes) -> list[str]:
    """Identity-code shapes and key forms found in a text."""
    found = [f"identity code {m!r}" for m in HETU_ANYWHERE.findall(INLINE_IMAGE.sub("", text))]
    lowered = text.lower()
    return found + [f"key ({form})" for form, value in key_forms(key).items() if value in lowered]


def file_leaks(root: Path, key: bytes) -> dict[str, list[str]]:
    """Leaks in every file under ``root``, by relative path (files read as UTF-8, undecodable bytes replaced)."""
    leaks = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if found := text_leaks(path.read_bytes().decode("utf-8", errors="replace"), key):
            leaks[str(path.relative_to(root))] = found
    return leaks


def database_leaks(con: duckdb.DuckDBPyConnection, key: bytes) -> dict[str, int]:
    """Rows holding an identity-code shape or a key form, by ``schema.table.column``, over every text column."""
    columns = con.execute(
        "select table_schema, table_name, column_name from information_schema.columns "
        "where data_type like '%VARCHAR%' or data_type = 'JSON' order by all").fetchall()
    assert columns, "no text column found to scan"
    forms = list(key_forms(key).values())
    leaks = {}
    for schema, table, column in columns:
        value = f'lower("{column}"::varchar)'
        hits = con.execute(
            f'select count(*) from "{schema}"."{table}" where regexp_matches("{column}"::varchar, ?) '
            f"or contains({value}, ?) or contains({value}, ?)", [HETU_ANYWHERE.pattern, *forms]).fetchall()[0][0]
        if hits:
            leaks[f"{schema}.{table}.{column}"] = hits
    return leaks


# ---------------------------------------------------------------- disclosure
def municipality_month_violations(con: duckdb.DuckDBPyConnection, threshold: int) -> list[tuple]:
    """Cells of panel.municipality_month that publish a count or mean of fewer than ``threshold`` persons,
    or withhold a cell that needs no withholding; persons are counted afresh from panel.person_month."""
    means = [c for (c,) in con.execute(
        "select column_name from information_schema.columns where table_schema = 'panel' "
        "and table_name = 'municipality_month' and data_type in ('DOUBLE', 'FLOAT', 'DECIMAL') "
        "order by ordinal_position").fetchall()]
    assert means, "panel.municipality_month has no mean columns"
    any_mean = " or ".join(f"mm.{c} is not null" for c in means)
    return con.execute(f"""
        with counted as (select kuntanumero, month, count(*) as n from panel.person_month group by all)
        select mm.kuntanumero, mm.month, c.n, mm.persons, mm.suppressed
        from panel.municipality_month as mm join counted as c using (kuntanumero, month)
        where (c.n < ? and (mm.persons is not null or {any_mean} or not mm.suppressed))
           or (c.n >= ? and (mm.persons is distinct from c.n or mm.suppressed))
        order by all""", [threshold, threshold]).fetchall()


def _count(text: str) -> int | None:
    digits = re.sub(r"[\s,\u202f\u00a0]", "", text)
    return int(digits) if digits.isdigit() else None


class _Tables(HTMLParser):
    """Every table of a page: its header texts, and each row's cells as (text, withheld)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: list[tuple[list[str], list[list[tuple[str, bool]]]]] = []
        self._cell: list[str] | None = None
        self._withheld = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(([], []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell, self._withheld = [], "suppressed" in (dict(attrs).get("class") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            if tag == "th":
                self.tables[-1][0].append(text)
            else:
                self.tables[-1][1][-1].append((text, self._withheld))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def report_violations(page: str, threshold: int, persons: dict[tuple[str, str, str], int | None]) -> list[str]:
    """Rows of the report's tables that show numbers resting on fewer than ``threshold`` persons.

    ``persons`` maps (outcome, estimator, subgroup) to ``n_persons`` of results.did_estimates. A row with an
    outcome and an estimator is an estimate or its inference (the subgroup is read from a ``Subgroup`` column,
    else from a first column named after the dimension, else ``all``): under the threshold it must be
    withheld (a ``td.suppressed``). In every row that shows numbers, a cell under a header naming persons
    must be a count of at least the threshold.
    """
    problems = []
    for heads, rows in _Tables(page).tables:
        lowered = [h.lower() for h in heads]
        person_cols = [i for i, h in enumerate(lowered) if "person" in h]
        for cells in rows:
            if not cells:
                continue
            texts = [text for text, _ in cells]
            withheld = any(w for _, w in cells)
            if "outcome" in lowered and "estimator" in lowered:
                at = lowered.index("outcome")
                if "subgroup" in lowered:
                    subgroup = texts[lowered.index("subgroup")]
                else:
                    subgroup = "all" if at == 0 else f"{heads[0]}={texts[0]}"
                n = persons.get((texts[at], texts[at + 1], subgroup))
                if n is not None and n < threshold and not withheld:
                    problems.append(f"estimate on {n} persons shown: {texts}")
            if withheld:
                continue
            for i in person_cols:
                if i < len(texts) and texts[i] not in SUPPRESSED_TEXT:
                    count = _count(texts[i])
                    if count is None or count < threshold:
                        problems.append(f"person count {texts[i]!r} shown with numbers: {texts}")
    return problems


WITHHELD_CELL = re.compile(r'<td class="suppressed"[^>]*>.*?</td>', re.DOTALL)


def _unsuppress(page: str) -> tuple[str, int]:
    """The page with every withheld cell showing a number instead, and how many cells were changed."""
    return WITHHELD_CELL.subn('<td class="num">0.1234</td>', page)


def _persons(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[tuple[str, str, str], int | None]:
    """The persons carrying each row (the treated side); 0 for a row withheld by a secondary rule, which must
    show no number whatever its count."""
    return {(o, e, s): (0 if rule not in (None, "primary") else n) for o, e, s, n, rule in con.execute(
        "select outcome, estimator, subgroup, coalesce(n_treated_persons, n_persons), suppression_rule "
        "from results.did_estimates where run_id = ?", [run_id]).fetchall()}


# --------------------------------------------------------------------- tests
@pytest.mark.slow
def test_no_identity_code_or_key_in_any_database_text(evaluated_sample) -> None:
    with db.connect(evaluated_sample.db, read_only=True) as con:
        assert database_leaks(con, evaluated_sample.key) == {}


@pytest.mark.slow
def test_no_identity_code_or_key_in_report_or_data_docs(evaluated_sample) -> None:
    out = evaluated_sample.out
    report, docs = out / "report" / "index.html", out / "data_docs"
    assert report.is_file()
    assert any(p.suffix == ".html" for p in docs.rglob("*")), "no Data Docs page was written"
    assert file_leaks(report.parent, evaluated_sample.key) == {}
    assert file_leaks(docs, evaluated_sample.key) == {}


@pytest.mark.slow
def test_no_identity_code_or_key_in_prefect_artifacts_parameters_or_logs(evaluated_sample) -> None:
    run = evaluated_sample
    assert {a["key"] for a in run.artifacts} >= {"validation-summary", "headline-effects"}
    assert run.api_logs, "the Prefect API stored no log of the run"
    assert run.log_lines, "no log record was captured"
    texts = {
        "artifacts": repr(run.artifacts),
        "flow parameters": repr(run.flow_parameters),
        "Prefect API logs": "\n".join(run.api_logs),
        "captured log records": "\n".join(run.log_lines),
    }
    assert {name: found for name, text in texts.items() if (found := text_leaks(text, run.key))} == {}


@pytest.mark.slow
def test_municipality_month_publishes_no_cell_under_the_threshold(evaluated_sample) -> None:
    threshold = evaluated_sample.config.disclosure.min_cell_persons
    with db.connect(evaluated_sample.db, read_only=True) as con:
        assert municipality_month_violations(con, threshold) == []
        shown, withheld = con.execute("select count(*) filter (where not suppressed), "
                                      "count(*) filter (where suppressed) from panel.municipality_month").fetchall()[0]
    assert shown > 0 and withheld > 0, "the sample should give both published and suppressed cells"


@pytest.mark.slow
def test_report_tables_publish_nothing_under_the_threshold(evaluated_sample) -> None:
    threshold = evaluated_sample.config.disclosure.min_cell_persons
    page = (evaluated_sample.out / "report" / "index.html").read_text(encoding="utf-8")
    with db.connect(evaluated_sample.db, read_only=True) as con:
        persons = _persons(con, evaluated_sample.run_id)
    assert report_violations(page, threshold, persons) == []
    assert any(n is not None and n < threshold for n in persons.values()), "no small estimate to withhold"
    # the estimate tables: every withheld cell, filled in, is caught by the check
    estimates_only = re.sub(r'<section id="balance">.*?</section>', "", page, flags=re.DOTALL)
    leaky, changed = _unsuppress(estimates_only)
    assert changed > 0
    assert len(report_violations(leaky, threshold, persons)) >= changed, "the check misses unsuppressed rows"
    # the balance table: a withheld row shows no number at all
    balance = re.search(r'<section id="balance">(.*?)</section>', page, flags=re.DOTALL)
    assert balance is not None
    for row in re.findall(r"<tr>(.*?)</tr>", balance.group(1), flags=re.DOTALL):
        if 'class="suppressed"' in row:
            cells = re.findall(r'<td class="suppressed"[^>]*>(.*?)</td>', row, flags=re.DOTALL)
            assert all(not re.search(r"\d+\.\d|%", c) for c in cells), row


@pytest.mark.slow
def test_results_rows_under_the_threshold_carry_no_numbers(evaluated_sample) -> None:
    threshold = evaluated_sample.config.disclosure.min_cell_persons
    with db.connect(evaluated_sample.db, read_only=True) as con:
        tables = [t for (t,) in con.execute(
            "select table_name from information_schema.columns where table_schema = 'results' "
            "and column_name in ('n_persons', 'suppressed') group by 1 having count(*) = 2").fetchall()]
        assert "did_estimates" in tables
        for table in tables:
            numbers = [c for (c,) in con.execute(
                "select column_name from information_schema.columns where table_schema = 'results' "
                "and table_name = ? and data_type = 'DOUBLE'", [table]).fetchall()]
            shown = " or ".join(f"{c} is not null" for c in numbers) or "false"
            carriers = "coalesce(n_treated_persons, n_persons)" if table in ("did_estimates", "robustness") \
                else "n_persons"
            bad = con.execute(f"select count(*) from results.{table} where ({carriers} < ? or suppressed) "
                              f"and (not suppressed or {shown})", [threshold]).fetchall()[0][0]
            assert bad == 0, f"results.{table}: {bad} rows under the threshold show numbers"


# ---------------------------------------------------------- negative controls
def test_scanners_find_a_planted_code_and_key(tmp_path: Path) -> None:
    key = b"0123456789abcdef0123456789abcdef"
    (tmp_path / "clean.txt").write_text("municipality 837, 2018-01, 27 persons, run 20261125T132530Z", encoding="utf-8")
    (tmp_path / "code.html").write_text(f"<td>{PLANTED_CODE}</td>", encoding="utf-8")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "key.json").write_text(f'{{"k": "{key.hex().upper()}"}}', encoding="utf-8")
    (tmp_path / "raw.log").write_text(f"key={key.decode()}", encoding="utf-8")
    assert file_leaks(tmp_path, key) == {
        "code.html": [f"identity code {PLANTED_CODE!r}"],
        "nested/key.json": ["key (hex)"],
        "raw.log": ["key (raw)"],
    }
    for code in ("131052-308T", "010594Y9032", "020304A900U"):
        assert text_leaks(f"x {code} y", key), code
    with duckdb.connect() as con:
        con.execute("create schema quarantine; create table quarantine.t (id integer, raw json, note varchar)")
        con.execute("insert into quarantine.t values (1, ?, 'fine'), (2, '{}', ?)",
                    [f'{{"hetu": "{PLANTED_CODE}"}}', f"k {key.decode()}"])
        assert database_leaks(con, key) == {"quarantine.t.raw": 1, "quarantine.t.note": 1}


def test_file_scanner_finds_the_identity_codes_of_the_delivery() -> None:
    leaks = file_leaks(SAMPLE / "kela", b"a-key-that-is-not-there")
    csv_files = {p.name for p in (SAMPLE / "kela").glob("*.csv")}
    assert csv_files and csv_files <= set(leaks)
    assert all(found and all(f.startswith("identity code") for f in found) for found in leaks.values())


def test_disclosure_checks_find_a_small_cell() -> None:
    with duckdb.connect() as con:
        con.execute("create schema panel; "
                    "create table panel.person_month (kuntanumero varchar, month date, person_key varchar); "
                    "create table panel.municipality_month (kuntanumero varchar, month date, persons bigint, "
                    "received double, suppressed boolean)")
        for code, n in (("091", 3), ("092", 2), ("837", 7)):
            con.execute("insert into panel.person_month select ?, date '2018-01-01', 'p' || i from range(?) t(i)",
                        [code, n])
        con.execute("insert into panel.municipality_month values ('091', date '2018-01-01', null, null, true), "
                    "('092', date '2018-01-01', null, 0.5, true), ('837', date '2018-01-01', 7, 0.4, false)")
        assert [r[0] for r in municipality_month_violations(con, 5)] == ["092"]
        assert [r[0] for r in municipality_month_violations(con, 8)] == ["092", "837"]
        assert municipality_month_violations(con, 2) == [("091", dt.date(2018, 1, 1), 3, None, True),
                                                         ("092", dt.date(2018, 1, 1), 2, None, True)]
    head = "<tr><th>Outcome</th><th>Estimator</th><th>Estimate</th><th>Persons</th></tr>"
    shown = f"<table>{head}<tr><td>received</td><td>twfe</td><td>0.1</td><td>12</td></tr></table>"
    withheld = (f"<table>{head}<tr><td>received</td><td>twfe</td>"
                f"<td class='suppressed' colspan='2'>suppressed (&lt; 15 persons)</td></tr></table>")
    persons = {("received", "twfe", "all"): 12}
    assert len(report_violations(shown, 15, persons)) == 2
    assert report_violations(withheld, 15, persons) == []
    assert report_violations(shown, 10, persons) == []
