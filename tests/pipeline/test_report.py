"""The HTML report: self-contained, disclosure-safe, and rendering whatever the database holds."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from pipeline import db as _db
from pipeline.errors import InputError
from pipeline.report import build_report, fmt_count, fmt_effect, fmt_p

RUN = "20240101T000000Z-abcdef12"
SUPPRESSED_ESTIMATE = 987.6543
SUPPRESSED_CI = (111.2222, 333.4444)
SMALL_GROUP_ESTIMATE = 0.7777123

DID_COLUMNS = (
    "run_id, outcome, estimator, subgroup, estimate, std_error, ci_low, ci_high, p_value, "
    "p_value_wild_bootstrap, ci_low_wild_bootstrap, ci_high_wild_bootstrap, p_value_randomization, "
    "n_obs, n_persons, n_clusters, n_treated_clusters, std_error_cv3, path, suppressed"
)


def visible(html: str) -> str:
    """The page without its inline images, whose base64 text could contain any digits."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)


def table_row(html: str, marker: str) -> str:
    """The one table row containing marker."""
    rows = [row for row in re.findall(r"<tr.*?</tr>", html, re.S) if marker in row]
    assert len(rows) == 1, rows
    return rows[0]


def add_run(con: duckdb.DuckDBPyConnection, run_id: str = RUN, status: str = "completed") -> None:
    con.execute(
        "insert into meta.runs values (?, timestamptz '2024-01-01 00:00:00+00', "
        "timestamptz '2024-01-01 00:10:00+00', ?, '0.1.0+gabc', '{}', ?, null)",
        [run_id, status, json.dumps([{"file": "a.csv"}, {"file": "b.csv"}, {"file": "c.parquet"}])],
    )


def did_row(outcome: str, estimator: str, subgroup: str, estimate: float, *, n_persons: int = 1200,
            suppressed: bool = False, ci: tuple[float, float] | None = None) -> tuple:
    low, high = ci or (estimate - 0.01, estimate + 0.01)
    return (RUN, outcome, estimator, subgroup, estimate, 0.005, low, high, 0.0004, 0.0312,
            low - 0.002, high + 0.002, 0.0476, n_persons * 24, n_persons, 31, 6, 0.006, "aggregated", suppressed)


def fill_results(con: duckdb.DuckDBPyConnection) -> None:
    rows = [
        did_row("received", "twfe", "all", -0.0213456),
        did_row("received", "clean_controls", "all", -0.0198765),
        did_row("amount_eur", "twfe", "all", -12.3456),
        did_row("long_term_receipt", "twfe", "all", 0.0044),
        did_row("received", "twfe", "municipality=837", -0.0301),
        did_row("received", "twfe", "age_band=25-34", -0.0222),
        did_row("received", "twfe", "municipality=049", SUPPRESSED_ESTIMATE, n_persons=900,
                suppressed=True, ci=SUPPRESSED_CI),
        did_row("received", "twfe", "kotitaloustyyppi=4", SMALL_GROUP_ESTIMATE, n_persons=3),
    ]
    con.executemany(f"insert into results.did_estimates ({DID_COLUMNS}) values ({', '.join(['?'] * 20)})", rows)
    con.executemany(
        "insert into results.event_study values (?, 'received', 'twfe', ?, ?, 0.004, ?, ?)",
        [(RUN, t, 0.001 * t, 0.001 * t - 0.008, 0.001 * t + 0.008) for t in range(-6, 7) if t != -1],
    )
    con.execute("insert into results.pretrend_tests values (?, 'received', 'twfe', 1.234, '5, 30', 0.321)", [RUN])
    con.execute(
        "insert into results.inference values "
        "(?, 'received', 'twfe', 'all', 'randomization', 0.0476, null, null, true, 21, 'sharp null'), "
        "(?, 'received', 'twfe', 'municipality=049', 'cv1', 0.5123, 100.5, 444.5, false, null, 'many clusters')",
        [RUN, RUN],
    )
    con.execute("insert into results.placebo_size values (?, 'received', 'cv1', 25, 0.24)", [RUN])


def fill_validation(con: duckdb.DuckDBPyConnection) -> None:
    _db.execute_file(con, "meta/validation_results.sql")
    con.execute(
        "insert into meta.validation_results values "
        "(?, now(), 'contract', 'R01_henkilotunnus', 'a.csv', true, 5000, 0, 'ok'), "
        "(?, now(), 'contract', 'R07_amount_nonnegative', 'a.csv', false, 5000, 2, 'negative amounts'), "
        "(?, now(), 'expectation', 'expect_column_values_to_not_be_null', 'staging.kela', true, 5000, 0, null)",
        [RUN, RUN, RUN],
    )


def fill_panel(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists panel")
    con.execute(
        "create table panel.municipality_month (kuntanumero varchar, month date, treated boolean, "
        "in_pilot integer, persons bigint, received double, amount_eur double, reduced_basic_amount double, "
        "social_work_notification double, suppressed boolean)"
    )
    rows = []
    for year, month in [(2017, 6), (2017, 12), (2018, 6), (2019, 6), (2020, 6)]:
        pilot = 1 if 2018 <= year <= 2019 else 0
        rows += [
            ("837", date(year, month, 1), True, pilot, 400, 0.30, 250.0, 0.05, 0.01, False),
            ("091", date(year, month, 1), False, 0, 900, 0.32, 260.0, 0.06, 0.02, False),
            ("049", date(year, month, 1), True, pilot, None, None, None, None, None, True),
        ]
    con.executemany("insert into panel.municipality_month values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


@pytest.fixture
def full_db(tmp_path: Path) -> Path:
    path = tmp_path / "kokeilu.duckdb"
    con = duckdb.connect(str(path))
    _db.ensure_result_tables(con)
    add_run(con, "20230101T000000Z-older000", status="completed")
    add_run(con)
    add_run(con, "20250101T000000Z-failed00", status="failed")
    fill_results(con)
    fill_validation(con)
    fill_panel(con)
    con.close()
    return path


def test_report_is_self_contained_and_complete(full_db: Path, tmp_path: Path) -> None:
    config = SimpleNamespace(disclosure=SimpleNamespace(min_cell_persons=5), pilot_cost_eur=1_500_000.0)
    path = build_report(full_db, tmp_path / "report", config=config)
    html = path.read_text(encoding="utf-8")

    assert path == tmp_path / "report" / "index.html" and path.is_file()
    assert RUN in html
    for outcome in ("received", "amount_eur", "long_term_receipt"):
        assert outcome in html
    assert html.count("data:image/png;base64,") >= 2  # event study and trends
    assert "<script" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "http://" not in html and "https://" not in html
    assert "-0.02135" in html and "&lt;0.001" in html and "0.048" in html
    assert "1\u202f500\u202f000 €" in html
    assert "F = 1.234" in html and "municipality" in html and "age_band" in html
    assert "R07_amount_nonnegative" in html and "&lt; 5" in html


def test_suppressed_numbers_never_appear(full_db: Path, tmp_path: Path) -> None:
    html = visible(build_report(full_db, tmp_path / "report").read_text(encoding="utf-8"))

    assert "suppressed (&lt; 5 persons)" in html
    for number in (SUPPRESSED_ESTIMATE, *SUPPRESSED_CI, SMALL_GROUP_ESTIMATE, 100.5, 444.5, 0.5123):
        assert fmt_effect(number) not in html
        assert str(number) not in html
    assert "987.6" not in html and "0.7777" not in html
    small_group = table_row(html, "<td>4</td>")
    assert "suppressed (&lt; 5 persons)" in small_group and ">3<" not in small_group
    failed_check = table_row(html, "R07_amount_nonnegative")
    assert "&lt; 5" in failed_check and ">2<" not in failed_check


def test_threshold_comes_from_config(full_db: Path, tmp_path: Path) -> None:
    config = SimpleNamespace(disclosure=SimpleNamespace(min_cell_persons=1000), pilot_cost_eur=None)
    html = build_report(full_db, tmp_path / "report", config=config).read_text(encoding="utf-8")

    assert "suppressed (&lt; 1000 persons)" in html
    assert "0.03012" not in html  # municipality=837 rests on 1200 persons: still shown
    assert "-0.0301" in html


def test_explicit_run_id_and_unknown_run(full_db: Path, tmp_path: Path) -> None:
    html = build_report(full_db, tmp_path / "r", run_id="20230101T000000Z-older000").read_text(encoding="utf-8")
    assert "20230101T000000Z-older000" in html and "not available" in html
    with pytest.raises(InputError):
        build_report(full_db, tmp_path / "r", run_id="no-such-run")


def test_empty_database_still_renders(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    con = duckdb.connect(str(path))
    _db.execute_file(con, "meta/runs.sql")
    add_run(con)
    con.close()

    html = build_report(path, tmp_path / "report").read_text(encoding="utf-8")

    assert RUN in html
    assert html.count("not available") >= 6
    assert "data:image/png;base64," not in html


def test_formatting() -> None:
    assert fmt_effect(-0.0213456) == "-0.02135"
    assert fmt_effect(-12.3456) == "-12.35"
    assert fmt_effect(None) == "–"
    assert fmt_p(0.0004) == "<0.001" and fmt_p(0.04761) == "0.048"
    assert fmt_count(3, 5) == "< 5" and fmt_count(0, 5) == "0"


def test_accepts_the_evaluation_config(full_db: Path, tmp_path: Path) -> None:
    pytest.importorskip("pydantic_settings")
    from schemas.config import DisclosureSettings, EvaluationConfig

    config = EvaluationConfig(disclosure=DisclosureSettings(min_cell_persons=10), pilot_cost_eur=2_000_000)
    html = build_report(full_db, tmp_path / "report", config=config).read_text(encoding="utf-8")

    assert "suppressed (&lt; 10 persons)" in html and "2\u202f000\u202f000 €" in html
