"""Expectation suites on the staged tables: pass on clean data, fail and record on bad data."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipeline import db as _db
from pipeline.quality import run_quality_checks

MONTHS = [dt.date(2024 + (m - 1) // 12, (m - 1) % 12 + 1, 1) for m in range(1, 13)]
PERSONS = 30
DOMAINS = ("TOIMEENTULO", "ASUMINEN", "TERVEYS")


def _create_tables(c: duckdb.DuckDBPyConnection) -> None:
    for name in ("staging/kela_income_support.sql", "staging/avain_assessments.sql", "meta/validation_results.sql"):
        _db.execute_file(c, name)


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with _db.connect(tmp_path / "q.duckdb") as c:
        _create_tables(c)
        yield c


def _key(person: int) -> str:
    """A person_key that fits both a UUID and a text column."""
    return f"00000000-0000-4000-8000-{person:012d}"


def _kela_row(person: int, month: dt.date, line: int) -> tuple:
    alennus = 20 if (person == 0 and month.month % 2 == 0) else 0
    return (
        _key(person), dt.date(1980 + person % 20, 1, 1), 1980 + person % 20, "M" if person % 2 else "F",
        f"hh{person:04d}", "091", month, f"{month:%Y%m}", 1 + person % 5, 1 + person % 6,
        555.11, round(100 + 7.5 * person, 2), alennus, 0, "kela.csv", line,
    )


def _insert_kela(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    con.executemany(f"insert into staging.kela_income_support values ({', '.join(['?'] * 16)})", rows)


def _fill(con: duckdb.DuckDBPyConnection) -> None:
    """360 valid Kela-style rows (30 persons x 12 months) and 180 AVAIN-style rows."""
    _insert_kela(con, [_kela_row(p, m, i + 2) for i, (p, m) in enumerate((p, m) for p in range(PERSONS) for m in MONTHS)])
    avain = []
    for p in range(PERSONS):
        for k, day in enumerate((dt.date(2024, 2, 1), dt.date(2024, 8, 1))):
            for d in DOMAINS:
                avain.append((
                    _key(p), 1980 + p % 20, "M" if p % 2 else "F", "091", day + dt.timedelta(days=p), k, d,
                    (p + k) % 11, None if k == 0 else 1 + p % 5, "TT01:+", None, None, p % 2, "avain.csv",
                    len(avain) + 2,
                ))
    con.executemany(f"insert into staging.avain_assessments values ({', '.join(['?'] * 15)})", avain)


def _results(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[tuple[str, str], tuple[bool, int, int]]:
    rows = con.execute(
        "select target, check_name, passed, observed, unexpected from meta.validation_results "
        "where run_id = ? and source = 'expectation'", [run_id],
    ).fetchall()
    return {(t, c): (p, o, u) for t, c, p, o, u in rows}


def test_clean_tables_pass_and_are_recorded(con: duckdb.DuckDBPyConnection, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(con)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    docs = tmp_path / "docs" / "quality"
    out = run_quality_checks(con, run_id="r1", docs_dir=docs)
    res = _results(con, "r1")
    assert out["failed"] == 0, {k: v for k, v in res.items() if not v[0]}
    assert out["expectations"] == len(res) == 15
    assert out["docs"] == str(docs / "index.html") and (docs / "index.html").is_file()
    assert os.listdir(cwd) == []  # GX left nothing in the working directory
    assert res[("staging.kela_income_support", "expect_compound_columns_to_be_unique(person_key,month)")] == (True, 360, 0)
    assert res[("staging.avain_assessments", "expect_column_values_to_be_between(tavoitteen_saavutus)")][:2] == (True, 180)
    assert ("staging.kela_income_support", "expect_column_values_to_be_between(rows_to_neighbour_median)") in res
    details = con.execute("select detail, checked_at from meta.validation_results where run_id = 'r1'").fetchall()
    assert all(d and "\n" not in d and t is not None for d, t in details)


def test_duplicates_and_volume_spike_fail_in_gx_and_in_duckdb(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    _fill(con)
    _insert_kela(con, [_kela_row(3, MONTHS[2], 9999)])  # duplicated (person_key, month)
    spike = dt.date(2025, 1, 1)  # 10x the usual 30 rows in one month, next to 2024-12
    _insert_kela(con, [_kela_row(p, spike, 10_000 + p) for p in range(1000, 1300)])
    _insert_kela(con, [_kela_row(p, dt.date(2025, 2, 1), 20_000 + p) for p in range(PERSONS)])

    con.execute(  # an AVAIN-style situation score out of range
        "insert into staging.avain_assessments select * replace (12 as tilannearvio, 'MUU' as tavoitealue) "
        "from staging.avain_assessments limit 1"
    )

    by_run = {}
    for run_id, limit in (("gx", 2_000_000), ("sql", 100)):  # frames in GX, then the DuckDB fallback
        out = run_quality_checks(con, run_id=run_id, docs_dir=tmp_path / "docs", max_frame_rows=limit)
        res = by_run[run_id] = _results(con, run_id)
        failed = {(t.split(".")[1], c) for (t, c), (p, _, _) in res.items() if not p}
        assert failed == {
            ("kela_income_support", "expect_compound_columns_to_be_unique(person_key,month)"),
            ("kela_income_support", "expect_column_values_to_be_between(rows_to_neighbour_median)"),
            ("avain_assessments", "expect_column_values_to_be_between(tilannearvio)"),
        }, run_id
        assert out["failed"] == 3 and out["expectations"] == 15
        unique = res[("staging.kela_income_support", "expect_compound_columns_to_be_unique(person_key,month)")]
        assert unique == (False, 360 + 1 + 300 + 30, 2)
        stored = con.execute(
            "select count(*) from meta.validation_results where run_id = ? and not passed", [run_id]
        ).fetchall()
        assert stored == [(3,)]
        assert (tmp_path / "docs" / "index.html").is_file()
    assert by_run["gx"] == by_run["sql"]  # the DuckDB fallback counts exactly what GX counts
    ratio = by_run["gx"][("staging.kela_income_support", "expect_column_values_to_be_between(rows_to_neighbour_median)")]
    assert ratio == (False, 14, 3)  # the spike month and both its neighbours


def test_missing_or_empty_tables_record_nothing(tmp_path: Path) -> None:
    with _db.connect(tmp_path / "e.duckdb") as c:
        _db.execute_file(c, "staging/avain_assessments.sql")  # exists, empty; Kela table absent
        out = run_quality_checks(c, run_id="e", docs_dir=tmp_path / "docs")
        assert out["expectations"] == 0 and out["failed"] == 0
        assert c.execute("select count(*) from meta.validation_results").fetchall() == [(0,)]
    assert (tmp_path / "docs" / "index.html").is_file()


def _naive_duplicates(con: duckdb.DuckDBPyConnection, columns: str) -> int:
    rows = con.execute(
        f"select coalesce(sum(n), 0) from (select count(*) as n from t group by {columns} having count(*) > 1)"
    ).fetchall()
    return int(rows[0][0])


@pytest.mark.parametrize("key_type", ["varchar", "uuid"])
@pytest.mark.parametrize(("case", "expected"), [
    ("unique", 0),
    ("duplicates", 5),  # a pair and a triple of identical keys
    ("same_month_other_day", 0),  # flagged by the month bitmap, cleared by the exact recount
    ("long_span", 2),  # dates over more months than the bitmap holds: whole-key hash
    ("null_keys", 2),  # NULLs group together, as in GROUP BY
])
def test_duplicate_count_matches_group_by(key_type: str, case: str, expected: int) -> None:
    """The hash screen plus exact recount counts what a plain GROUP BY counts, whatever the key type."""
    from pipeline.quality import _duplicated_rows

    con = duckdb.connect()
    con.execute(f"create table main.t (person_key {key_type}, month date, goal varchar)").fetchall()
    rows = [(_key(p), dt.date(2020, 1 + m, 1), "A") for p in range(20) for m in range(12)]
    if case == "duplicates":
        rows += [(_key(3), dt.date(2020, 5, 1), "A")] + [(_key(7), dt.date(2020, 2, 1), "A")] * 2
    elif case == "same_month_other_day":
        rows += [(_key(p), dt.date(2020, 3, 15), "A") for p in range(5)]
    elif case == "long_span":
        rows += [(_key(1), dt.date(2035, 1, 1), "A")] * 2
    elif case == "null_keys":
        rows += [(None, dt.date(2020, 4, 1), "A")] * 2
    con.executemany("insert into main.t values (?, ?, ?)", rows)
    for columns in (("person_key", "month"), ("person_key", "month", "goal"), ("goal", "person_key")):
        assert _duplicated_rows(con, "main.t", columns) == _naive_duplicates(con, ", ".join(columns))
    assert _duplicated_rows(con, "main.t", ("person_key", "month")) == expected


def _bad_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The clean tables with a duplicated key and an out-of-range situation score."""
    _fill(con)
    _insert_kela(con, [_kela_row(3, MONTHS[2], 9999)])
    con.execute("insert into staging.avain_assessments select * replace (12 as tilannearvio) "
                "from staging.avain_assessments limit 1")


@pytest.mark.parametrize("child", ["runs", "fails"])
def test_suites_in_a_child_process_record_what_they_record_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture, child: str) -> None:
    """A run's suites, run by GX in a child process (or here, when the child fails), record the same
    outcomes as :func:`run_quality_checks` in this process, and write the Data Docs."""
    from pipeline import evaluation

    db = tmp_path / "q.duckdb"
    with _db.connect(db) as c:
        _create_tables(c)
        _bad_tables(c)
        run_quality_checks(c, run_id="here", docs_dir=tmp_path / "here")
    if child == "fails":
        monkeypatch.setattr(evaluation, "SUITES_NICENESS", "not-a-number")  # the child stops at its first line
    pending = evaluation.PendingSuites(run_id="child", out=tmp_path / "out")
    pending.prepare(db)
    summary = pending.finish(db)
    assert ("expectation suites child failed" in caplog.text) == (child == "fails")
    with _db.connect(db) as c:
        assert _results(c, "child") == _results(c, "here")
        order = c.execute("select run_id, list(check_name order by rowid) from meta.validation_results "
                          "group by run_id order by run_id").fetchall()
    assert order[0][1] == order[1][1]
    assert summary["failed"] == 3 and summary["expectations"] == 15  # both duplicated keys, the score
    assert (tmp_path / "out" / "data_docs" / "index.html").is_file()


def test_a_run_that_fails_stops_its_suites(tmp_path: Path) -> None:
    """Closing pending suites kills the child and removes its files; nothing is recorded."""
    from pipeline import evaluation

    db = tmp_path / "q.duckdb"
    with _db.connect(db) as c:
        _create_tables(c)
        _fill(c)
    pending = evaluation.PendingSuites(run_id="x", out=tmp_path / "out")
    pending.prepare(db)
    work = Path(pending._tmp.name)
    pending.close()
    assert not work.exists()
    with _db.connect(db) as c:
        assert c.execute("select count(*) from meta.validation_results").fetchall() == [(0,)]


def test_data_docs_show_the_outcomes_but_no_person_key(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """A duplicated key fails in GX; neither its record nor the Data Docs name the (pseudonymised) key, while
    examples of other columns' unexpected values are still recorded."""
    _bad_tables(con)
    con.execute("update staging.kela_income_support set sex = 'X' where person_key = ?", [_key(5)])
    docs = tmp_path / "docs"
    out = run_quality_checks(con, run_id="keys", docs_dir=docs)
    assert out["failed"] == 4
    details = dict(con.execute("select check_name || ' ' || target, detail from meta.validation_results "
                               "where run_id = 'keys' and not passed").fetchall())
    assert all(_key(3) not in d for d in details.values()), details
    assert "e.g. X" in details["expect_column_values_to_be_in_set(sex) staging.kela_income_support"]
    pages = {p.relative_to(docs).as_posix(): p.read_text(encoding="utf-8") for p in docs.rglob("*.html")}
    assert sorted(pages) == ["index.html", "suites/staging__avain_assessments.html",
                             "suites/staging__kela_income_support.html",
                             "suites/staging__kela_income_support__monthly.html"]
    assert not any(_key(3) in page or "00000000-0000-4000-8000" in page for page in pages.values())
    assert "keys" in pages["index.html"] and "expect_column_values_to_be_in_set(sex)" in pages["index.html"]
