"""Panel edge cases on a tiny hand-written Kela delivery, one person per rule of the evaluation design.

Each person exists for one cohort rule of ``evaluation_design.md`` (age bounds on the reference
date, status of the latest baseline-year row, the support window, moves after baseline, months
without support, a corrected month); each test asserts the exact panel rows the rule implies.
The loader needs no particular set of month files, so the delivery holds one contract CSV per
month that has rows: 2017-01 ... 2018-02, the panel's months.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from pipeline import db
from pipeline.load import load_delivery
from pipeline.panels import build_panels
from pipeline.pseudonym import DEMO_KEY, Pseudonymiser
from schemas.columns import KELA_COLUMNS
from schemas.config import EvaluationConfig
from schemas.hetu import check_character, hetu_violation

CONTROL = "179"  # Jyväskylä, comparison municipality
KUOPIO = "297"  # pilot 2018-01 ... 2019-12
TAMPERE = "837"  # pilot 2018-01 ... 2019-12
CORRECTED_MONTH = "201710"


def synthetic_hetu(birth: dt.date, individual: int) -> str:
    """A valid synthetic identity code (individual number 900-999) for a birth date."""
    if individual not in range(900, 1000):
        raise ValueError(f"individual number {individual}: expected 900-999 (synthetic)")
    digits = f"{birth:%d%m%y}{individual:03d}"
    sign = "-" if birth.year < 2000 else "A"
    code = f"{digits[:6]}{sign}{digits[6:]}{check_character(digits)}"
    if (broken := hetu_violation(code)) is not None:
        raise ValueError(f"{code} breaks {broken}")
    return code


def months(first: str, last: str) -> list[str]:
    """Benefit months ``YYYYMM`` from ``first`` to ``last`` inclusive."""
    year, month = int(first[:4]), int(first[4:])
    out = []
    while f"{year}{month:02d}" <= last:
        out.append(f"{year}{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


@dataclass(frozen=True)
class KelaRow:
    """One person-month of the delivery, with the contract's defaults for everything not under test."""

    person: str
    month: str  # YYYYMM
    kuntanumero: str = CONTROL
    status: int = 3
    granted: str = "480,00"
    household_type: int = 1
    reduction: int = 0
    notified: int = 0

    def fields(self) -> dict[str, str]:
        """The row as contract fields."""
        return {
            "hetu": PEOPLE[self.person], "kotitalous_id": f"kt-{self.person}", "kuntanumero": self.kuntanumero,
            "tilastokuukausi": self.month, "kotitaloustyyppi": str(self.household_type),
            "tyomarkkina_asema": str(self.status), "perusosa_eur": "487,89", "myonnetty_eur": self.granted,
            "perusosan_alennus_pct": str(self.reduction), "ohjaus_sosiaalityohon": str(self.notified),
        }


PEOPLE: dict[str, str] = {
    "turns_25_on_reference": synthetic_hetu(dt.date(1992, 12, 31), 901),
    "turns_25_after_reference": synthetic_hetu(dt.date(1993, 1, 1), 902),
    "turns_65_on_reference": synthetic_hetu(dt.date(1952, 12, 31), 903),
    "turns_65_after_reference": synthetic_hetu(dt.date(1953, 1, 1), 904),
    "status_lost": synthetic_hetu(dt.date(1980, 5, 15), 905),
    "status_gained": synthetic_hetu(dt.date(1980, 5, 16), 906),
    "moves_out_of_pilot": synthetic_hetu(dt.date(1975, 3, 10), 907),
    "moves_into_pilot": synthetic_hetu(dt.date(1975, 3, 11), 908),
    "support_outside_window": synthetic_hetu(dt.date(1970, 1, 20), 909),
    "zero_decision_in_window": synthetic_hetu(dt.date(1970, 1, 21), 910),
    "gaps": synthetic_hetu(dt.date(1985, 6, 1), 911),
    "corrected": synthetic_hetu(dt.date(1990, 2, 28), 912),
    "cents": synthetic_hetu(dt.date(1988, 8, 8), 913),
    "every_month": synthetic_hetu(dt.date(1960, 4, 4), 914),
    "refused_then_supported": synthetic_hetu(dt.date(1966, 6, 6), 915),
}

WINDOW = months("201707", "201712")
ROWS: tuple[KelaRow, ...] = (
    *(KelaRow(p, m) for p in ("turns_25_on_reference", "turns_25_after_reference", "turns_65_on_reference",
                              "turns_65_after_reference") for m in WINDOW),
    *(KelaRow("status_lost", m, status=3 if m < "201712" else 2) for m in WINDOW),
    *(KelaRow("status_gained", m, status=2 if m < "201712" else 3) for m in WINDOW),
    # Tampere in spring, Kuopio (pilot) at baseline with a new household type, a comparison town in 2018.
    *(KelaRow("moves_out_of_pilot", m, TAMPERE, household_type=1) for m in months("201703", "201706")),
    *(KelaRow("moves_out_of_pilot", m, KUOPIO, household_type=1 if m < "201712" else 3) for m in WINDOW),
    *(KelaRow("moves_out_of_pilot", m, CONTROL) for m in months("201801", "201802")),
    *(KelaRow("moves_into_pilot", m, CONTROL) for m in WINDOW),
    *(KelaRow("moves_into_pilot", m, TAMPERE) for m in months("201801", "201802")),
    *(KelaRow("support_outside_window", m) for m in months("201701", "201706") + ["201801"]),
    KelaRow("zero_decision_in_window", "201703"),
    KelaRow("zero_decision_in_window", "201709", granted="0"),
    KelaRow("gaps", "201702", granted="300,00", reduction=20),
    KelaRow("gaps", "201708", granted="480,00", notified=1),
    KelaRow("gaps", "201801", granted="250,00"),
    *(KelaRow("corrected", m, granted="400,00") for m in WINDOW),
    KelaRow("cents", "201711", granted="12,34"),
    KelaRow("cents", "201712", granted="487,89"),
    # Support in every month of 2017; the only reduction comes in 2018, after the baseline year.
    *(KelaRow("every_month", m, household_type=2) for m in months("201701", "201712")),
    KelaRow("every_month", "201801", reduction=40),
    # A negative decision (0 EUR) in June, then four months of support: four months of receipt.
    KelaRow("refused_then_supported", "201706", granted="0"),
    *(KelaRow("refused_then_supported", m, TAMPERE, household_type=4) for m in months("201709", "201712")),
)
PANEL_MONTHS = [dt.date(int(m[:4]), int(m[4:]), 1) for m in months("201701", "201802")]
COHORT = {"turns_25_on_reference", "turns_65_after_reference", "status_gained", "moves_out_of_pilot",
          "moves_into_pilot", "gaps", "corrected", "cents", "every_month", "refused_then_supported"}
COHORT_COLUMNS = ("baseline_kuntanumero", "treated", "birth_year", "sex", "age_band", "kotitaloustyyppi",
                  "age_at_reference")
COVARIATE_COLUMNS = ("tyomarkkina_asema", "baseline_receipt_months", "baseline_receipt_band", "baseline_reduced")


def write_delivery(directory: Path, rows: tuple[KelaRow, ...]) -> dict[str, int]:
    """One contract CSV per month that has rows; the rows written per file name."""
    directory.mkdir(parents=True, exist_ok=True)
    by_month: dict[str, list[KelaRow]] = defaultdict(list)
    for row in rows:
        by_month[row.month].append(row)
    header = [c.name for c in KELA_COLUMNS]
    written = {}
    for month, month_rows in sorted(by_month.items()):
        name = f"toimeentulotuki_{month}.csv"
        lines = [";".join(header)] + [";".join(r.fields()[h] for h in header) for r in month_rows]
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        written[name] = len(month_rows)
    return written


def key(person: str) -> str:
    """The person's ``person_key`` under the demo key."""
    return Pseudonymiser(DEMO_KEY).key_of(PEOPLE[person])


def load_and_build(path: Path, kela_dir: Path, run_id: str) -> dict[str, Any]:
    """Load a Kela delivery into the database at ``path``, rebuild the panels, return the load totals."""
    config = EvaluationConfig()
    with db.connect(path) as con:
        report = load_delivery(con, kela_dir=kela_dir, avain_dir=None, key=DEMO_KEY, config=config, run_id=run_id)
        build_panels(con, config)
    return report.totals()


def cohort_row(con: duckdb.DuckDBPyConnection, person: str) -> tuple | None:
    """The person's panel.cohort row (its membership columns, without the key), or ``None`` when out of the cohort."""
    rows = con.execute(f"select {', '.join(COHORT_COLUMNS)} from panel.cohort where person_key = ?",
                       [key(person)]).fetchall()
    return rows[0] if rows else None


def person_months(con: duckdb.DuckDBPyConnection, person: str) -> list[tuple]:
    """The person's panel.person_month rows without the key, in month order."""
    return con.execute("select * exclude (person_key) from panel.person_month where person_key = ? order by month",
                       [key(person)]).fetchall()


def expected_months(kuntanumero: str, pilot_start: dt.date | None, support: dict[dt.date, tuple]) -> list[tuple]:
    """Balanced rows: (month, kuntanumero, in_pilot, event_time, received, amount, reduced, notified)."""
    rows = []
    for m in PANEL_MONTHS:
        since = None if pilot_start is None else (m.year - pilot_start.year) * 12 + m.month - pilot_start.month
        in_pilot = int(since is not None and since >= 0)
        amount, reduced, notified = support.get(m, (0.0, 0, 0))
        rows.append((m, kuntanumero, in_pilot, since, int(amount > 0), amount, reduced, notified))
    return rows


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The hand-written delivery and its rows per file."""
    directory = tmp_path_factory.mktemp("edge") / "kela"
    return directory, write_delivery(directory, ROWS)


@pytest.fixture(scope="module")
def built(delivery, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The delivery loaded and its panels built: database path and load totals."""
    directory, _ = delivery
    path = tmp_path_factory.mktemp("edge_db") / "evaluation.duckdb"
    return path, load_and_build(path, directory, "edge-load")


def test_delivery_loads_whole(delivery, built) -> None:
    _, written = delivery
    path, totals = built
    assert totals["rows_in"] == totals["rows_valid"] == len(ROWS) == sum(written.values())
    assert totals["rows_quarantined"] == totals["files_rejected"] == 0
    with db.connect(path, read_only=True) as con:
        members = {k for (k,) in con.execute("select person_key::varchar from panel.cohort").fetchall()}
        built_months = con.execute("select distinct month from panel.person_month order by 1").fetchall()
    assert members == {key(p) for p in COHORT}
    assert [m for (m,) in built_months] == PANEL_MONTHS


def test_age_bounds_on_reference_date(built) -> None:
    path, _ = built
    with db.connect(path, read_only=True) as con:
        rows = {p: cohort_row(con, p) for p in ("turns_25_on_reference", "turns_25_after_reference",
                                                 "turns_65_on_reference", "turns_65_after_reference")}
    assert rows == {
        # baseline_kuntanumero, treated, birth_year, sex, age_band, kotitaloustyyppi, age_at_reference
        "turns_25_on_reference": (CONTROL, False, 1992, "M", "25-34", 1, 25),
        "turns_25_after_reference": None,  # 24 on 2017-12-31
        "turns_65_on_reference": None,  # 65 on 2017-12-31: above 25-64
        "turns_65_after_reference": (CONTROL, False, 1953, "F", "50-64", 1, 64),
    }


def test_status_of_the_latest_baseline_row_decides(built) -> None:
    path, _ = built
    with db.connect(path, read_only=True) as con:
        lost = cohort_row(con, "status_lost")
        gained = cohort_row(con, "status_gained")
        lost_months = person_months(con, "status_lost")
    assert lost is None
    assert lost_months == []
    assert gained == (CONTROL, False, 1980, "F", "35-49", 1, 37)


def test_baseline_municipality_survives_moves(built) -> None:
    path, _ = built
    pay = (480.0, 0, 0)
    with db.connect(path, read_only=True) as con:
        out_cohort = cohort_row(con, "moves_out_of_pilot")
        out_months = person_months(con, "moves_out_of_pilot")
        into_cohort = cohort_row(con, "moves_into_pilot")
        into_months = person_months(con, "moves_into_pilot")
        years = con.execute("select * exclude (person_key) from panel.person_year where person_key = ?",
                            [key("moves_out_of_pilot")]).fetchall()
    # Baseline is the latest 2017 row (Kuopio), not the first (Tampere) nor the 2018 residence.
    assert out_cohort == (KUOPIO, True, 1975, "M", "35-49", 3, 42)
    spring = [dt.date(2017, m, 1) for m in range(3, 13)] + [dt.date(2018, 1, 1), dt.date(2018, 2, 1)]
    assert out_months == expected_months(KUOPIO, dt.date(2018, 1, 1), dict.fromkeys(spring, pay))
    assert years == [(2017, KUOPIO, 0, 12, 10, 1)]
    assert into_cohort == (CONTROL, False, 1975, "F", "35-49", 1, 42)
    paid = [dt.date(2017, m, 1) for m in range(7, 13)] + [dt.date(2018, 1, 1), dt.date(2018, 2, 1)]
    assert into_months == expected_months(CONTROL, None, dict.fromkeys(paid, pay))


def test_support_only_outside_the_window_is_out(built) -> None:
    path, _ = built
    with db.connect(path, read_only=True) as con:
        outside = cohort_row(con, "support_outside_window")
        zero = cohort_row(con, "zero_decision_in_window")
        staged = con.execute("select count(*) from staging.kela_income_support where person_key in (?, ?)",
                             [key("support_outside_window"), key("zero_decision_in_window")]).fetchall()[0][0]
    assert staged == 9  # loaded, then left out by the cohort rules
    assert outside is None
    assert zero is None  # a negative decision (0 EUR) in the window is no support


def test_months_without_support_are_zero_rows(built) -> None:
    path, _ = built
    with db.connect(path, read_only=True) as con:
        cohort = cohort_row(con, "gaps")
        rows = person_months(con, "gaps")
        years = con.execute("select * exclude (person_key) from panel.person_year where person_key = ?",
                            [key("gaps")]).fetchall()
    assert cohort == (CONTROL, False, 1985, "M", "25-34", 1, 32)
    assert rows == expected_months(CONTROL, None, {
        dt.date(2017, 2, 1): (300.0, 1, 0),
        dt.date(2017, 8, 1): (480.0, 0, 1),
        dt.date(2018, 1, 1): (250.0, 0, 0),
    })
    # 2018 has two months of data only: no person-year for it.
    assert years == [(2017, CONTROL, 0, 12, 2, 0)]


def test_redelivered_month_with_a_row_removed(delivery, tmp_path) -> None:
    directory, written = delivery
    path = tmp_path / "corrected.duckdb"
    load_and_build(path, directory, "first")
    with db.connect(path, read_only=True) as con:
        before = set(con.execute("select * from panel.person_month").fetchall())
    remaining = tuple(r for r in ROWS if r.month == CORRECTED_MONTH and r.person != "corrected")
    correction = tmp_path / "correction"
    write_delivery(correction, remaining)
    totals = load_and_build(path, correction, "correction")
    name = f"toimeentulotuki_{CORRECTED_MONTH}.csv"
    with db.connect(path, read_only=True) as con:
        after = set(con.execute("select * from panel.person_month").fetchall())
        staged_month = con.execute("select count(*), count(*) filter (where person_key = ?) "
                                   "from staging.kela_income_support where tilastokuukausi = ?",
                                   [key("corrected"), CORRECTED_MONTH]).fetchall()[0]
        manifest = con.execute("select file_name, rows_in, rows_staged, rows_quarantined, run_id "
                               "from meta.loaded_files where period = ?", [CORRECTED_MONTH]).fetchall()
        accounted = con.execute(
            "select (select sum(rows_in)::bigint from meta.loaded_files), "
            "(select sum(rows_staged)::bigint from meta.loaded_files), "
            "(select count(*) from staging.kela_income_support), "
            "(select count(*) from quarantine.kela_income_support)").fetchall()[0]
        check = con.execute("select passed, observed, unexpected from meta.validation_results "
                            "where run_id = 'correction' and check_name = 'row_accounting'").fetchall()
        cohort = cohort_row(con, "corrected")
    n = written[name] - 1
    assert (totals["files"], totals["rows_in"], totals["rows_valid"], totals["rows_quarantined"]) == (1, n, n, 0)
    assert staged_month == (n, 0)
    assert manifest == [(name, n, n, 0, "correction")]
    assert accounted == (len(ROWS) - 1, len(ROWS) - 1, len(ROWS) - 1, 0)
    assert check == [(True, n, 0)]
    assert cohort == (CONTROL, False, 1990, "F", "25-34", 1, 27)
    month = dt.date(2017, 10, 1)
    corrected = uuid.UUID(key("corrected"))
    assert before - after == {(corrected, month, CONTROL, 0, None, 1, 400.0, 0, 0)}
    assert after - before == {(corrected, month, CONTROL, 0, None, 0, 0.0, 0, 0)}


def test_amounts_keep_their_cents(built) -> None:
    path, _ = built
    with db.connect(path, read_only=True) as con:
        rows = person_months(con, "cents")
    assert rows == expected_months(CONTROL, None, {
        dt.date(2017, 11, 1): (12.34, 0, 0),
        dt.date(2017, 12, 1): (487.89, 0, 0),
    })


# --------------------------------------------------------------------------- #
# baseline covariates
# --------------------------------------------------------------------------- #
def covariates(con: duckdb.DuckDBPyConnection, person: str) -> tuple:
    """The person's baseline covariates beyond the membership columns."""
    return con.execute(f"select {', '.join(COVARIATE_COLUMNS)} from panel.cohort where person_key = ?",
                       [key(person)]).fetchall()[0]


def test_cohort_is_the_membership_columns_then_the_covariates(built) -> None:
    path, _ = built
    with db.connect(path, read_only=True) as con:
        columns = [c for (c,) in con.execute("select column_name from duckdb_columns() where schema_name = 'panel' "
                                             "and table_name = 'cohort' order by column_index").fetchall()]
        uncommented = con.execute("select column_name from duckdb_columns() where schema_name = 'panel' "
                                  "and table_name = 'cohort' and (comment is null or comment = '')").fetchall()
        nulls = con.execute("select count(*) from panel.cohort where "
                            + " or ".join(f"{c} is null" for c in COVARIATE_COLUMNS)).fetchall()[0][0]
    assert columns == ["person_key", *COHORT_COLUMNS, *COVARIATE_COLUMNS]
    assert uncommented == []
    assert nulls == 0


def test_receipt_and_reductions_of_the_baseline_year(built) -> None:
    path, _ = built
    with db.connect(path, read_only=True) as con:
        found = {p: covariates(con, p) for p in COHORT}
    # tyomarkkina_asema, baseline_receipt_months, baseline_receipt_band, baseline_reduced
    assert found == {
        "turns_25_on_reference": (3, 6, "4-6", False),
        "turns_65_after_reference": (3, 6, "4-6", False),
        "status_gained": (3, 6, "4-6", False),  # status 2 until November: the latest row decides
        "moves_out_of_pilot": (3, 10, "10-12", False),  # spring in Tampere counts as well as the window
        "moves_into_pilot": (3, 6, "4-6", False),
        "gaps": (3, 2, "1-3", True),  # reduced in February, before the baseline month (August)
        "corrected": (3, 6, "4-6", False),
        "cents": (3, 2, "1-3", False),
        "every_month": (3, 12, "10-12", False),  # the 2018 reduction is after the baseline year
        "refused_then_supported": (3, 4, "4-6", False),  # the 0 EUR decision is no month of receipt
    }


def test_covariates_follow_the_latest_baseline_row(built) -> None:
    path, _ = built
    with db.connect(path, read_only=True) as con:
        every = cohort_row(con, "every_month")
        refused = cohort_row(con, "refused_then_supported")
    assert every == (CONTROL, False, 1960, "F", "50-64", 2, 57)
    assert refused == (TAMPERE, True, 1966, "M", "50-64", 4, 51)


def test_corrected_month_changes_the_months_of_receipt(delivery, tmp_path) -> None:
    directory, _ = delivery
    path = tmp_path / "corrected.duckdb"
    load_and_build(path, directory, "first")
    correction = tmp_path / "correction"
    write_delivery(correction, tuple(r for r in ROWS if r.month == CORRECTED_MONTH and r.person != "corrected"))
    load_and_build(path, correction, "correction")
    with db.connect(path, read_only=True) as con:
        assert covariates(con, "corrected") == (3, 5, "4-6", False)


def test_status_covariate_when_several_codes_define_the_cohort(built, tmp_path) -> None:
    import shutil

    path, _ = built
    copy = tmp_path / "codes.duckdb"
    shutil.copy(path, copy)
    with db.connect(copy) as con:
        build_panels(con, EvaluationConfig(cohort={"labour_market_codes": (2, 3)}))
        lost = covariates(con, "status_lost")  # status 2 in the latest 2017 row
        gained = covariates(con, "status_gained")
        statuses = dict(con.execute("select tyomarkkina_asema, count(*) from panel.cohort group by 1").fetchall())
    assert lost == (2, 6, "4-6", False)
    assert gained == (3, 6, "4-6", False)
    assert statuses == {2: 1, 3: len(COHORT)}
