"""The balance table on small hand-made cohorts: shares by hand, exact balance after weighting, suppression."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pytest

from pipeline import db as _db
from pipeline.balance import BALANCE_COLUMNS, balance_table
from schemas.config import EvaluationConfig

COVARIATES = ("age_band", "sex", "kotitaloustyyppi", "baseline_receipt_band", "baseline_reduced",
              "baseline_receipt_months")
STRATA = ["age_band", "sex", "kotitaloustyyppi", "baseline_receipt_band", "baseline_reduced"]


def _cohort(seed: int = 3, n: int = 8_000) -> pl.DataFrame:
    """A cohort whose pilot members are younger and more often single, every stratum in both cohorts."""
    rng = np.random.default_rng(seed)
    age = rng.choice(["25-34", "35-49", "50-64"], size=n)
    hh = rng.choice([1, 2, 4], size=n, p=[0.6, 0.2, 0.2])
    months = rng.integers(1, 13, size=n)
    logit = -0.6 + 0.9 * (age == "25-34") + 0.6 * (hh == 1)
    treated = rng.random(n) < 1 / (1 + np.exp(-logit))
    band = np.where(months <= 3, "1-3", np.where(months <= 6, "4-6", np.where(months <= 9, "7-9", "10-12")))
    return pl.DataFrame({
        "person_key": [f"p{i:05d}" for i in range(n)], "treated": treated, "age_band": age,
        "sex": rng.choice(["F", "M"], size=n), "kotitaloustyyppi": hh.astype(np.int8), "tyomarkkina_asema": 3,
        "baseline_receipt_months": months.astype(np.int32), "baseline_receipt_band": band,
        "baseline_reduced": rng.random(n) < 0.3,
    })


def _con(cohort: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema panel")
    con.register("_c", cohort.to_arrow())
    con.execute("create table panel.cohort as select * from _c")
    con.unregister("_c")
    return con


@pytest.fixture(scope="module")
def cohort() -> pl.DataFrame:
    frame = _cohort()
    cells = frame.group_by(STRATA).agg(pl.col("treated").sum().alias("t"), (~pl.col("treated")).sum().alias("c"))
    assert cells.filter((pl.col("t") == 0) | (pl.col("c") == 0)).height == 0  # common support everywhere
    return frame


@pytest.fixture(scope="module")
def table(cohort: pl.DataFrame) -> pl.DataFrame:
    config = EvaluationConfig(covariates=COVARIATES, disclosure={"min_cell_persons": 1})
    return balance_table(_con(cohort), config)


def test_rows_and_columns(table: pl.DataFrame) -> None:
    assert table.columns == list(BALANCE_COLUMNS)
    assert table.select("covariate", "level").rows() == [
        ("age_band", "25-34"), ("age_band", "35-49"), ("age_band", "50-64"), ("sex", "F"), ("sex", "M"),
        ("kotitaloustyyppi", "1"), ("kotitaloustyyppi", "2"), ("kotitaloustyyppi", "4"),
        ("baseline_receipt_band", "1-3"), ("baseline_receipt_band", "10-12"), ("baseline_receipt_band", "4-6"),
        ("baseline_receipt_band", "7-9"), ("baseline_reduced", "false"), ("baseline_reduced", "true"),
        ("baseline_receipt_months", "mean"),
    ]
    assert set(table["strata"]) == {" x ".join(STRATA)}
    assert not table["suppressed"].any()
    assert table["pilot_persons_unmatched"].to_list() == [0] * table.height


def test_shares_and_standardized_differences_by_hand(cohort: pl.DataFrame, table: pl.DataFrame) -> None:
    pilot, comparison = cohort.filter(pl.col("treated")), cohort.filter(~pl.col("treated"))
    for covariate, level in [("age_band", "25-34"), ("sex", "M"), ("kotitaloustyyppi", "1"),
                             ("baseline_reduced", "true")]:
        col = pl.col(covariate).cast(pl.String).str.to_lowercase() == level.lower()
        n1, n0 = pilot.filter(col).height, comparison.filter(col).height
        p1, p0 = n1 / pilot.height, n0 / comparison.height
        d = (p1 - p0) / np.sqrt((p1 * (1 - p1) + p0 * (1 - p0)) / 2)
        row = table.filter((pl.col("covariate") == covariate) & (pl.col("level") == level)).row(0, named=True)
        assert (row["pilot_persons"], row["comparison_persons"], row["statistic"]) == (n1, n0, "share")
        assert row["pilot_value"] == pytest.approx(p1, abs=1e-14)
        assert row["comparison_value"] == pytest.approx(p0, abs=1e-14)
        assert row["std_diff"] == pytest.approx(d, abs=1e-12)
    m1, m0 = pilot["baseline_receipt_months"].cast(pl.Float64), comparison["baseline_receipt_months"].cast(pl.Float64)
    row = table.filter(pl.col("covariate") == "baseline_receipt_months").row(0, named=True)
    assert (row["pilot_persons"], row["comparison_persons"]) == (pilot.height, comparison.height)
    assert row["pilot_value"] == pytest.approx(m1.mean(), abs=1e-12)
    assert row["std_diff"] == pytest.approx((m1.mean() - m0.mean()) / np.sqrt((m1.var(ddof=0) + m0.var(ddof=0)) / 2),
                                            abs=1e-12)
    # the planted selection shows before weighting: pilot members younger and more often single
    young = table.filter((pl.col("covariate") == "age_band") & (pl.col("level") == "25-34")).row(0, named=True)
    assert young["std_diff"] > 0.2


def test_weighted_shares_by_hand(cohort: pl.DataFrame, table: pl.DataFrame) -> None:
    weighted = cohort.with_columns(
        pl.when(pl.col("treated")).then(1.0).otherwise(
            pl.col("treated").sum().over(STRATA) / (~pl.col("treated")).sum().over(STRATA)).alias("w"))
    comparison = weighted.filter(~pl.col("treated"))
    expected = (comparison["w"] * comparison["baseline_receipt_months"]).sum() / comparison["w"].sum()
    row = table.filter(pl.col("covariate") == "baseline_receipt_months").row(0, named=True)
    assert row["comparison_value_weighted"] == pytest.approx(expected, abs=1e-12)


def test_weighting_balances_every_discrete_stratum_exactly(table: pl.DataFrame) -> None:
    shares = table.filter(pl.col("statistic") == "share")
    assert (shares["comparison_value_weighted"] - shares["pilot_value"]).abs().max() < 1e-13
    assert shares["std_diff_weighted"].abs().max() < 1e-12
    assert shares["std_diff"].abs().max() > 0.2  # there was something to balance


def test_without_common_support_the_unmatched_pilot_members_show(cohort: pl.DataFrame) -> None:
    # Comparison members aged 25-34 of household type 2 removed: their pilot peers cannot be matched.
    gap = (pl.col("age_band") == "25-34") & (pl.col("kotitaloustyyppi") == 2) & ~pl.col("treated")
    config = EvaluationConfig(covariates=("age_band", "kotitaloustyyppi"), disclosure={"min_cell_persons": 1})
    table = balance_table(_con(cohort.filter(~gap)), config)
    pilot = cohort.filter(pl.col("treated"))
    matched = pilot.filter(~((pl.col("age_band") == "25-34") & (pl.col("kotitaloustyyppi") == 2)))
    row = table.filter((pl.col("covariate") == "kotitaloustyyppi") & (pl.col("level") == "2")).row(0, named=True)
    assert row["comparison_value_weighted"] == pytest.approx(
        matched.filter(pl.col("kotitaloustyyppi") == 2).height / matched.height, abs=1e-13)
    assert row["std_diff_weighted"] > 0.05
    unmatched = dict(table.filter(pl.col("covariate") == "kotitaloustyyppi").select("level", "pilot_persons_unmatched")
                     .iter_rows())
    n_gap = pilot.height - matched.height
    assert n_gap >= 5 and unmatched == {"1": 0, "2": n_gap, "4": 0}
    # the same count under a threshold above it is withheld, the row itself stays
    strict = balance_table(_con(cohort.filter(~gap)), EvaluationConfig(
        covariates=("age_band", "kotitaloustyyppi"), disclosure={"min_cell_persons": n_gap + 1}))
    row = strict.filter((pl.col("covariate") == "kotitaloustyyppi") & (pl.col("level") == "2")).row(0, named=True)
    assert not row["suppressed"] and row["pilot_persons_unmatched"] is None and row["pilot_value"] is not None


def test_no_covariates_is_an_empty_table(cohort: pl.DataFrame) -> None:
    table = balance_table(_con(cohort), EvaluationConfig(covariates=()))
    assert table.height == 0 and table.columns == list(BALANCE_COLUMNS)


def test_small_cells_are_suppressed_with_a_second_cell(cohort: pl.DataFrame) -> None:
    # Four pilot members of household type 5 (one more level), under a threshold of 5.
    extra = cohort.filter(pl.col("treated")).head(4).with_columns(
        pl.lit(5, pl.Int8).alias("kotitaloustyyppi"), (pl.col("person_key") + "x").alias("person_key"))
    extra_c = cohort.filter(~pl.col("treated")).head(30).with_columns(
        pl.lit(5, pl.Int8).alias("kotitaloustyyppi"), (pl.col("person_key") + "y").alias("person_key"))
    config = EvaluationConfig(covariates=("sex", "kotitaloustyyppi"), disclosure={"min_cell_persons": 5})
    con = _con(pl.concat([cohort, extra, extra_c]))
    table = balance_table(con, config)
    open_table = balance_table(con, EvaluationConfig(covariates=config.covariates, disclosure={"min_cell_persons": 1}))
    smallest = open_table.filter((pl.col("covariate") == "kotitaloustyyppi") & (pl.col("level") != "5")).sort(
        pl.min_horizontal("pilot_persons", "comparison_persons"))["level"][0]
    household = table.filter(pl.col("covariate") == "kotitaloustyyppi").sort("level")
    # type 5 rests on 4 pilot members; the smallest other type is withheld too, or 5 = total - the rest
    assert household.filter(pl.col("suppressed"))["level"].to_list() == sorted(["5", smallest])
    hidden = household.filter(pl.col("suppressed"))
    withheld = ["pilot_persons", "comparison_persons", "pilot_value", "comparison_value",
                "comparison_value_weighted", "std_diff", "std_diff_weighted", "pilot_persons_unmatched"]
    assert hidden.select(withheld).null_count().row(0) == (2,) * len(withheld)
    assert household.filter(~pl.col("suppressed")).select(withheld).null_count().row(0) == (0,) * len(withheld)
    assert not table.filter(pl.col("covariate") == "sex")["suppressed"].any()
    # a threshold above every cell withholds everything
    everything = balance_table(_con(cohort), EvaluationConfig(covariates=("sex",),
                                                                disclosure={"min_cell_persons": 10_000}))
    assert everything["suppressed"].all() and everything["pilot_value"].null_count() == everything.height


def test_results_table_takes_the_frame_and_comments_every_column(cohort: pl.DataFrame, table: pl.DataFrame) -> None:
    con = _con(cohort)
    _db.execute_file(con, "results/balance.sql")
    _db.execute_file(con, "results/balance.sql")  # idempotent
    con.register("_b", table.with_columns(pl.lit("run-1").alias("run_id")).to_arrow())
    con.execute(f"insert into results.balance (run_id, {', '.join(BALANCE_COLUMNS)}) "
                f"select run_id, {', '.join(BALANCE_COLUMNS)} from _b")
    assert con.execute("select count(*) from results.balance").fetchall()[0][0] == table.height
    columns = con.execute("select column_name, comment from duckdb_columns() where schema_name = 'results' "
                          "and table_name = 'balance' order by column_index").fetchall()
    assert [c for c, _ in columns] == ["run_id", *BALANCE_COLUMNS]
    assert all(comment for _, comment in columns)
    assert con.execute("select comment from duckdb_tables() where table_name = 'balance'").fetchall()[0][0]
