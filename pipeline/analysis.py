"""Every estimate of an evaluation, from the panels to the rows of ``results.*``.

This module decides *what* is estimated (outcomes, estimators, subgroups,
inference) from the :class:`~schemas.config.EvaluationConfig`; *how* lives in
:mod:`pipeline.estimation` (which knows nothing of Kela) and
:mod:`pipeline.inference`. Disclosure control is applied here, once, to every row
before it is written: a row resting on fewer persons than the threshold keeps
its keys and is marked ``suppressed`` with its numbers withheld.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from schemas.config import AVAIN_OUTCOMES, MONTHLY_OUTCOMES, YEARLY_OUTCOMES, EvaluationConfig

NUMERIC_RESULT_COLUMNS = (
    "estimate", "std_error", "ci_low", "ci_high", "p_value", "p_value_wild_bootstrap",
    "ci_low_wild_bootstrap", "ci_high_wild_bootstrap", "p_value_randomization", "std_error_cv3",
)
COST_COLUMNS = (
    "effect_per_person_month", "effect_per_member", "effect_per_member_ci_low", "effect_per_member_ci_high",
    "effect_total", "effect_total_ci_low", "effect_total_ci_high", "observed_total", "counterfactual_total",
    "change_share",
)


def estimate_all(con: duckdb.DuckDBPyConnection, config: EvaluationConfig) -> dict[str, pl.DataFrame]:
    """All results tables of one run (without ``run_id``), disclosure control applied."""
    from pipeline import estimates

    wanted = set(config.outcomes)
    parts: dict[str, list[pl.DataFrame]] = {"did_estimates": [], "event_study": [], "pretrend_tests": [],
                                             "inference": [], "placebo_size": [], "robustness": [], "cost": []}
    for outcome in [o for o in MONTHLY_OUTCOMES if o in wanted]:
        _extend(parts, estimates.monthly_outcome(con, config, outcome))
    for outcome in [o for o in YEARLY_OUTCOMES if o in wanted]:
        _extend(parts, estimates.yearly_outcome(con, config, outcome))
    if any(o in wanted for o in AVAIN_OUTCOMES) and _has_rows(con, "panel.avain_assessment"):
        _extend(parts, estimates.avain_outcomes(con, config, [o for o in AVAIN_OUTCOMES if o in wanted]))
    tables = {name: pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
              for name, frames in parts.items()}
    tables = {name: _nan_to_null(frame) for name, frame in tables.items()}
    threshold = config.disclosure.min_cell_persons
    for name in ("did_estimates", "robustness"):
        if tables[name].height:
            tables[name] = suppress_small(tables[name], threshold)
    if tables["cost"].height:
        tables["cost"] = suppress_small(tables["cost"], threshold, COST_COLUMNS)
    return tables


def suppress_small(frame: pl.DataFrame, threshold: int,
                   columns: tuple[str, ...] = NUMERIC_RESULT_COLUMNS) -> pl.DataFrame:
    """Withhold every number of a row based on fewer than ``threshold`` persons."""
    small = pl.col("n_persons").is_null() | (pl.col("n_persons") < threshold)
    numeric = [c for c in columns if c in frame.columns]
    return frame.with_columns(
        [pl.when(small).then(None).otherwise(pl.col(c)).alias(c) for c in numeric]
        + [small.alias("suppressed")]
    )


def _nan_to_null(frame: pl.DataFrame) -> pl.DataFrame:
    """NaN (an undefined statistic, e.g. a jackknife without a second treated cluster) is stored as NULL."""
    floats = [c for c, t in frame.schema.items() if t.is_float()]
    return frame.with_columns([pl.col(c).fill_nan(None) for c in floats]) if floats else frame


def _extend(parts: dict[str, list[pl.DataFrame]], new: dict[str, Any]) -> None:
    for name, frame in new.items():
        if frame is not None and frame.height:
            parts[name].append(frame)


def _has_rows(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    exists = con.execute(
        "select count(*) from duckdb_tables() where schema_name = ? and table_name = ?", [schema, name]
    ).fetchall()[0][0]
    return bool(exists) and con.execute(f"select count(*) > 0 from {table}").fetchall()[0][0]
