"""The HTML report: self-contained, disclosure-safe, and rendering whatever the database holds."""

from __future__ import annotations

import html
import json
import re
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from pipeline import db as _db
from pipeline.errors import InputError
from pipeline.report import SIMULATION_DOC, build_report, simulation, fmt_count, fmt_effect, fmt_eur, fmt_p

RUN = "20240101T000000Z-abcdef12"
SUPPRESSED_ESTIMATE = 987.6543
SUPPRESSED_CI = (111.2222, 333.4444)
SMALL_GROUP_ESTIMATE = 0.7777123
SUPPRESSED_ROBUSTNESS = (0.4321987, 0.3111456, 0.5999321, 0.8888765, 654.3219, 0.9191919)
SUPPRESSED_COST = (-4444.444, -77_777_777.0, -88_888_888.0, -66_666_666.0, 9_999_999.0, 87_654_321.0)
ROBUSTNESS_COLUMNS = (
    "run_id, outcome, analysis, estimator, variant, parameter, estimate, std_error, ci_low, ci_high, p_value, "
    "n_persons, n_clusters, n_treated_clusters, suppressed"
)

DID_COLUMNS = (
    "run_id, outcome, estimator, subgroup, estimate, std_error, ci_low, ci_high, p_value, "
    "p_value_wild_bootstrap, ci_low_wild_bootstrap, ci_high_wild_bootstrap, p_value_randomization, "
    "n_obs, n_persons, n_clusters, n_treated_clusters, std_error_cv3, path, suppressed"
)


def visible(html: str) -> str:
    """The page without its inline images, whose base64 text could contain any digits."""
    return re.sub(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]+", "", html)


def table_row(html: str, marker: str) -> str:
    """The one table row containing marker."""
    rows = [row for row in re.findall(r"<tr.*?</tr>", html, re.S) if marker in row]
    assert len(rows) == 1, rows
    return rows[0]


def add_run(con: duckdb.DuckDBPyConnection, run_id: str = RUN, status: str = "completed") -> None:
    con.execute(
        "insert into meta.runs (run_id, started_at, finished_at, status, code_version, config, inputs, message) "
        "values (?, timestamptz '2024-01-01 00:00:00+00', "
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
        did_row("received", "sdid", "all", -0.0187654),
    ]
    con.executemany(f"insert into results.did_estimates ({DID_COLUMNS}) values ({', '.join(['?'] * 20)})", rows)
    con.executemany(
        "insert into results.event_study values (?, 'received', 'twfe', ?, ?, 0.004, ?, ?)",
        [(RUN, t, 0.001 * t, 0.001 * t - 0.008, 0.001 * t + 0.008) for t in range(-6, 7) if t != -1],
    )
    con.execute(
        "insert into results.pretrend_tests values (?, 'received', 'twfe', 1.234, '5, 30', 0.321, 0.654, 999), "
        "(?, 'received', 'twfe_event_study_anticipation', 2.5, '5, 30', 0.012, null, null)",
        [RUN, RUN],
    )
    con.execute(
        "insert into results.inference (run_id, outcome, estimator, subgroup, method, p_value, ci_low, ci_high, "
        "exact, draws, assumes) values "
        "(?, 'received', 'twfe', 'all', 'randomization', 0.0476, null, null, true, 21, 'sharp null'), "
        "(?, 'received', 'twfe', 'municipality=049', 'cv1', 0.5123, 100.5, 444.5, false, null, 'many clusters')",
        [RUN, RUN],
    )
    con.execute("insert into results.placebo_size values (?, 'received', 'cv1', 25, 0.24)", [RUN])


def robustness_row(outcome: str, analysis: str, estimator: str, variant: str, estimate: float | None,
                   ci: tuple[float | None, float | None] = (None, None), *, parameter: float | None = None,
                   p_value: float | None = 0.2, treated: int = 5, suppressed: bool = False) -> tuple:
    return (RUN, outcome, analysis, estimator, variant, parameter, estimate, 0.01, ci[0], ci[1], p_value,
            1200, 30, treated, suppressed)


def fill_robustness(con: duckdb.DuckDBPyConnection) -> None:
    """Every kind of robustness row for received; amount_eur's rows all suppressed."""
    hidden_loo, hidden_low, hidden_high, hidden_cmp, hidden_antic, hidden_breakdown = SUPPRESSED_ROBUSTNESS
    rows = [
        robustness_row("received", "leave_one_out_treated", "twfe", "without=837", -0.0251234, (-0.0412, -0.0090)),
        robustness_row("received", "leave_one_out_treated", "clean_controls", "without=837", -0.0241234,
                       (-0.0452, -0.0030)),
        robustness_row("received", "leave_one_out_treated", "twfe", "without=049", hidden_loo,
                       (hidden_low, hidden_high), suppressed=True),
        robustness_row("received", "leave_one_out_comparison", "twfe", "without=091", -0.0222111, (-0.04, -0.004)),
        robustness_row("received", "leave_one_out_comparison", "twfe", "without=092", -0.0199222, (-0.038, -0.002)),
        robustness_row("received", "leave_one_out_comparison", "twfe", "without=093", hidden_cmp, (0.1, 0.2),
                       suppressed=True),
        *(robustness_row("received", "honest_relative_magnitudes", "twfe_event_study", f"mbar={m:g}", -0.02,
                         (-0.03 - 0.05 * m, -0.01 + 0.05 * m), parameter=m, p_value=None) for m in (0.0, 0.5, 1.0)),
        *(robustness_row("received", "honest_smoothness", "twfe_event_study", f"m={m:g}", -0.02,
                         (-0.035 - 4 * m, -0.005 + 4 * m), parameter=m, p_value=None) for m in (0.0, 0.01)),
        robustness_row("received", "honest_breakdown", "twfe_event_study", "relative_magnitudes", 0.75,
                       p_value=None),
        robustness_row("received", "anticipation", "twfe", "837 from 2017-11", -0.0185432, (-0.0301, -0.0069)),
        robustness_row("received", "anticipation", "clean_controls", "837 from 2017-11", -0.0176543,
                       (-0.0333, -0.0020)),
        robustness_row("received", "anticipation_window", "clean_controls", "837 from 2017-11", 0.0456789,
                       (0.0123, 0.0790), p_value=0.0123, treated=1),
        robustness_row("amount_eur", "anticipation", "twfe", "837 from 2017-11", hidden_antic, (600.0, 700.0),
                       suppressed=True),
        robustness_row("amount_eur", "honest_breakdown", "twfe_event_study", "relative_magnitudes",
                       hidden_breakdown, suppressed=True),
    ]
    con.executemany(f"insert into results.robustness ({ROBUSTNESS_COLUMNS}) values ({', '.join(['?'] * 15)})", rows)


def fill_cost(con: duckdb.DuckDBPyConnection) -> None:
    """A shown TWFE cost row (-12.3456 EUR a month over 24,000 person-months of 1,000 members) and a suppressed one."""
    per_member, total, total_low, total_high, observed, counterfactual = SUPPRESSED_COST
    con.executemany(
        "insert into results.cost (run_id, outcome, estimator, effect_per_person_month, pilot_person_months, "
        "treated_persons, effect_per_member, effect_per_member_ci_low, effect_per_member_ci_high, effect_total, "
        "effect_total_ci_low, effect_total_ci_high, observed_total, counterfactual_total, change_share, suppressed) "
        "values (?, 'amount_eur', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (RUN, "twfe", -12.3456, 24_000, 1_000, -296.2944, -400.0, -190.0, -296_294.4, -400_000.0,
             -190_000.0, 5_000_000.0, 5_296_294.4, -296_294.4 / 5_296_294.4, False),
            (RUN, "clean_controls", -185.185, 24_000, 1_000, per_member, -5555.555, -3333.333, total, total_low,
             total_high, observed, counterfactual, -0.888777, True),
        ],
    )


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
    fill_robustness(con)
    fill_cost(con)
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
    assert html.count("data:image/svg+xml;base64,") >= 4  # event study, trends, leave one out, sensitivity
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert all(src.startswith("data:image/svg+xml;base64,") for src in re.findall(r'<img[^>]*src="([^"]*)"', html))
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


def test_suppressed_robustness_and_cost_rows_never_show_numbers(full_db: Path, tmp_path: Path) -> None:
    config = SimpleNamespace(disclosure=SimpleNamespace(min_cell_persons=5), pilot_cost_eur=1_500_000.0)
    html = visible(build_report(full_db, tmp_path / "report", config=config).read_text(encoding="utf-8"))

    for number in SUPPRESSED_ROBUSTNESS:
        assert fmt_effect(number) not in html and str(number) not in html
    assert f"{SUPPRESSED_ROBUSTNESS[-1]:.3g}" not in html  # the breakdown value's own format
    for number in SUPPRESSED_COST:
        assert fmt_eur(number) not in html and fmt_effect(number) not in html and str(number) not in html
    assert fmt_eur(-5555.555) not in html and "-88.9 %" not in html
    assert fmt_eur(1_500_000.0 - 77_777_777.0) not in html and fmt_eur(77_777_777.0 - 1_500_000.0) not in html
    loo = table_row(html, "pilot municipality 049")
    assert "suppressed" in loo and "0.43" not in loo
    assert "Breakdown value: suppressed (&lt; 5 persons)." in html
    assert "Breakdown value M̄* = 0.75:" in html  # received's breakdown value is shown
    antic = robustness_part(html, "amount_eur")
    assert "suppressed" in antic and "654" not in antic and "600" not in antic
    cost = html[html.index('<section id="cost">'):html.index('<section id="trends">')]
    assert cost.count("suppressed (&lt; 5 persons)") == 8  # every quantity of the clean-controls column
    # a cost row resting on the disclosure threshold or above, but whose estimate is suppressed, is withheld too
    config = SimpleNamespace(disclosure=SimpleNamespace(min_cell_persons=1001), pilot_cost_eur=None)
    html = visible(build_report(full_db, tmp_path / "strict", config=config).read_text(encoding="utf-8"))
    cost = html[html.index('<section id="cost">'):html.index('<section id="trends">')]
    assert fmt_eur(-296_294.4) not in cost and "suppressed (&lt; 1001 persons)" in cost


def robustness_part(html: str, outcome: str) -> str:
    """The part of the robustness section about one outcome."""
    section = html[html.index('<section id="robustness">'):html.index('<section id="cost">')]
    start = section.index(f"<h3>{outcome}</h3>")
    end = section.find("<h3>", start + 1)
    return section[start:] if end < 0 else section[start:end]


def test_robustness_section_renders(full_db: Path, tmp_path: Path) -> None:
    html = visible(build_report(full_db, tmp_path / "report").read_text(encoding="utf-8"))
    received = robustness_part(html, "received")

    assert "How robust is this?" in html
    others, anticipation = received[:received.index("<h4>Leaving out")], received[received.index("<h4>Did the"):]
    estimators = [table_row(others, f"<td>{label}</td>") for label in ("TWFE", "clean controls", "synthetic DiD")]
    assert fmt_effect(-0.0187654) in estimators[2] and fmt_effect(-0.0213456) in estimators[0]
    assert 'alt="Leave one out: received"' in received and 'alt="Sensitivity: received"' in received
    without = table_row(received, "pilot municipality 837")
    assert fmt_effect(-0.0251234) in without and fmt_effect(-0.0241234) in without
    assert fmt_effect(-0.0213456) in table_row(received, "none (all municipalities)")
    spread = table_row(received, "each comparison municipality")
    assert f"{fmt_effect(-0.0222111)} … {fmt_effect(-0.0199222)} (2 estimates); 1 suppressed" in spread
    assert "[-0.08000, 0.04000]" in table_row(received, "M̄ = 1<")
    assert "M = 0.01" in received and "Breakdown value M̄* = 0.75" in received
    assert "would already overturn it" in received
    assert fmt_effect(-0.0185432) in table_row(anticipation, "<td>TWFE</td>")
    assert f"from {fmt_effect(-0.0213456)} to {fmt_effect(-0.0185432)}" in received
    assert fmt_effect(0.0456789) in received and "The interval excludes zero" in received
    assert "from\n1 municipality against all others" in received


def test_cost_view(full_db: Path, tmp_path: Path) -> None:
    config = SimpleNamespace(disclosure=SimpleNamespace(min_cell_persons=5), pilot_cost_eur=1_500_000.0)
    html = visible(build_report(full_db, tmp_path / "report", config=config).read_text(encoding="utf-8"))
    cost = html[html.index('<section id="cost">'):html.index('<section id="trends">')]

    assert "What it cost / saved" in cost and "24\u202f000 pilot person-months" in cost
    per_member = table_row(cost, "per treated cohort member")
    assert f"{fmt_eur(-296.2944)} [{fmt_eur(-400.0)}, {fmt_eur(-190.0)}]" in per_member
    assert f"{fmt_eur(-296_294.4)} [{fmt_eur(-400_000.0)}, {fmt_eur(-190_000.0)}]" in table_row(cost, "in total")
    assert fmt_eur(5_000_000.0) in table_row(cost, "Observed spending")
    assert fmt_eur(5_296_294.4) in table_row(cost, "Counterfactual spending")
    assert "-5.6 %" in table_row(cost, "Relative change")
    # saving 296 294 EUR minus 1 500 000 EUR of pilot cost, interval from the savings 190 000 .. 400 000 EUR
    net = table_row(cost, "Saving minus pilot cost")
    assert f"{fmt_eur(-1_203_705.6)} [{fmt_eur(-1_310_000.0)}, {fmt_eur(-1_100_000.0)}]" in net

    html = visible(build_report(full_db, tmp_path / "no_cost").read_text(encoding="utf-8"))
    assert "Saving minus pilot cost" not in html and fmt_eur(-296_294.4) in html


def test_pretrend_leads_with_the_randomization_p_value(full_db: Path, tmp_path: Path) -> None:
    html = visible(build_report(full_db, tmp_path / "report").read_text(encoding="utf-8"))
    section = html[html.index('<section id="event-studies">'):html.index('<section id="robustness">')]

    row = table_row(section, "<td>twfe</td>")
    assert row.index("0.654") < row.index("0.321") and ">999<" in row
    assert "randomization p = 0.654 over 999 reassignments; F-test p = 0.321" in section
    anticipation = table_row(section, "twfe_event_study_anticipation")
    assert "<strong>–</strong>" in anticipation and "0.012" in anticipation
    sim = simulation()
    low, high = (f"{x * 100:.0f}" for x in sim.lead_test_f)
    assert f"rejected {low}–{high}% of the time" in " ".join(section.split()) and "over-rejects" in section


def test_the_advice_is_the_rule_applied_to_the_simulation_file(full_db: Path, tmp_path: Path) -> None:
    """The report's advice on which p-value to believe is read from the committed simulation by the stated rule:
    each sentence of :func:`pipeline.simulation_advice.advice` is in the page, and a different file changes it."""
    from pipeline.simulation_advice import SIMULATION_JSON, advice

    root = Path(__file__).resolve().parents[2]
    page = build_report(full_db, tmp_path / "report").read_text(encoding="utf-8")
    section = visible(page[page.index('<section id="p-values">'):page.index('<section id="event-studies">')])
    expected = advice(root / SIMULATION_JSON)
    assert expected.sentences and all(html.escape(s, quote=False) in section for s in expected.sentences)
    assert SIMULATION_DOC in section
    assert "trust randomization inference and the wild bootstrap" not in section
    assert "<em>exact</em> when every assignment is enumerated" in page
    # the advice follows the file: make the closest method qualify and the headline method appears
    data = json.loads((root / SIMULATION_JSON).read_text(encoding="utf-8"))
    for r in data["results"]:
        if r["placement"] == "actual" and r["estimator"] == "clean_controls" and r["method"] == "wcr":
            r.update(size_within_2mcse=True, coverage_within_2mcse=True)
    altered = tmp_path / "sim.json"
    altered.write_text(json.dumps(data), encoding="utf-8")
    changed = simulation(altered)
    assert changed is not None and changed.sentences[0].startswith("Believe the Clean controls, wild cluster bootstrap WCR")


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
    assert html.count("not available") >= 8
    assert "Robustness checks (results.robustness): not available" in html
    assert "Cost view (results.cost): not available" in html
    assert "data:image/svg+xml;base64," not in html


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


def test_figures_are_well_formed_svg(full_db: Path, tmp_path: Path) -> None:
    import base64
    import xml.etree.ElementTree as ET

    html = build_report(full_db, tmp_path / "report").read_text(encoding="utf-8")
    sources = re.findall(r'<img[^>]*src="data:image/svg\+xml;base64,([^"]*)"', html)
    assert len(sources) >= 4
    for src in sources:
        root = ET.fromstring(base64.b64decode(src))
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert float(root.get("width")) > 0 and float(root.get("height")) > 0
        marks = [e for e in root.iter() if e.tag.endswith(("polyline", "polygon", "circle"))]
        assert marks, "a figure without any data marks"
        for e in marks:  # no NaN or infinite coordinate leaks into the drawing
            assert not re.search(r"nan|inf", " ".join(e.attrib.values()), re.I)


def test_nice_ticks_and_gaps() -> None:
    from pipeline.report import Panel, nice_ticks

    ticks = nice_ticks(-0.0123, 0.0456)
    values = [v for v, _ in ticks]
    assert values[0] >= -0.0123 and values[-1] <= 0.0456 and 4 <= len(values) <= 9
    assert [label for _, label in ticks][:3] == ["\u22120.01", "0.00", "0.01"]
    assert [label for _, label in nice_ticks(-2.4, 47.3)] == ["0", "10", "20", "30", "40"]

    panel = Panel((0.0, 0.0, 100.0, 50.0), (0.0, 4.0), (0.0, 1.0))
    panel.line([0, 1, 2, 3, 4], [0.1, 0.2, None, 0.4, float("nan")], "tab:blue")
    panel.band([0, 1, 2, 3, 4], [0.0, 0.1, None, 0.2, 0.3], [0.5, 0.6, 0.7, 0.8, 0.9], "tab:blue")
    polylines = [m for m in panel.marks if m.startswith("<polyline")]
    assert len(polylines) == 1 and polylines[0].count(",") == 2  # only the first two points are joined
    assert sum(m.startswith("<polygon") for m in panel.marks) == 2  # the band breaks at its gap
