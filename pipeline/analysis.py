"""Every estimate of an evaluation, from the panels to the rows of ``results.*``.

This module decides *what* is estimated (outcomes, estimators, subgroups,
inference) from the :class:`~schemas.config.EvaluationConfig`; *how* lives in
:mod:`pipeline.estimation` (which knows nothing of Kela) and
:mod:`pipeline.inference`. Disclosure control is applied here, once, to every row
before it is written: a row resting on fewer persons than the threshold keeps
its keys and is marked ``suppressed`` with its numbers withheld.

The work splits into independent units (:class:`Unit`: one per monthly or yearly
outcome, one for the AVAIN outcomes). :func:`unit_inputs` reads the panel tables a
unit needs from the database; :func:`run_unit` estimates the unit from those
frames alone, in an in-memory DuckDB, so it can run in another process or on
another machine (a DuckDB connection cannot be shipped); :func:`combine` joins
the units' tables and applies disclosure control. :func:`estimate_all` runs the
units one after another; an orchestrator may run them in parallel and get the
same tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import duckdb
import polars as pl

from pipeline import db as _db
from schemas.config import AVAIN_OUTCOMES, MONTHLY_OUTCOMES, YEARLY_OUTCOMES, EvaluationConfig

NUMERIC_RESULT_COLUMNS = (
    "estimate", "std_error", "ci_low", "ci_high", "p_value", "p_value_wild_bootstrap",
    "ci_low_wild_bootstrap", "ci_high_wild_bootstrap", "p_value_randomization", "std_error_cv3",
)
RESULT_TABLES = (
    "did_estimates", "event_study", "pretrend_tests", "inference", "placebo_size", "robustness", "cost",
)
UNIT_TABLES = {"monthly": ("cohort", "person_month"), "yearly": ("cohort", "person_year"),
               "avain": ("avain_assessment",)}
"""The panel tables each kind of unit reads (see :mod:`pipeline.estimates`)."""
COST_COLUMNS = (
    "effect_per_person_month", "effect_per_member", "effect_per_member_ci_low", "effect_per_member_ci_high",
    "effect_total", "effect_total_ci_low", "effect_total_ci_high", "observed_total", "counterfactual_total",
    "change_share",
)


@dataclass(frozen=True)
class Unit:
    """One independent piece of estimation work: an outcome (or the AVAIN outcomes together) and its panel."""

    kind: Literal["monthly", "yearly", "avain"]
    outcomes: tuple[str, ...]

    @property
    def label(self) -> str:
        """Short name for logs and task runs, e.g. ``monthly:received``."""
        return f"{self.kind}:{'+'.join(self.outcomes)}"


def estimate_all(con: duckdb.DuckDBPyConnection, config: EvaluationConfig) -> dict[str, pl.DataFrame]:
    """All results tables of one run (without ``run_id``), disclosure control applied."""
    units = estimation_units(con, config)
    return combine([run_unit(unit_inputs(con, unit), config, unit) for unit in units], config)


def estimation_units(con: duckdb.DuckDBPyConnection, config: EvaluationConfig) -> list[Unit]:
    """The units of a run in the order their rows are written: monthly outcomes, yearly outcomes, AVAIN."""
    wanted = set(config.outcomes)
    units = [Unit("monthly", (o,)) for o in MONTHLY_OUTCOMES if o in wanted]
    units += [Unit("yearly", (o,)) for o in YEARLY_OUTCOMES if o in wanted]
    avain = tuple(o for o in AVAIN_OUTCOMES if o in wanted)
    if avain and _has_rows(con, "panel.avain_assessment"):
        units.append(Unit("avain", avain))
    return units


def unit_inputs(con: duckdb.DuckDBPyConnection, unit: Unit) -> dict[str, pl.DataFrame]:
    """The panel tables one unit reads, by ``panel`` table name, in their stored row order.

    Pseudonyms do not leave the database: ``person_key`` is replaced by its rank
    among the unit's keys, which keeps joins, counts of persons and sort order.
    """
    tables = UNIT_TABLES[unit.kind]
    keys = " union ".join(f"select person_key from panel.{t}" for t in tables)
    ids = (f"with ids as (select person_key, row_number() over (order by person_key)::integer as id "
           f"from (select distinct person_key from ({keys})))")
    return {t: _db.query_frame(con, f"{ids} select t.* replace (ids.id as person_key) "
                                    f"from panel.{t} t join ids using (person_key) order by t.rowid")
            for t in tables}


def run_unit(frames: dict[str, pl.DataFrame], config: EvaluationConfig, unit: Unit) -> dict[str, pl.DataFrame]:
    """Every estimate of one unit from its :func:`unit_inputs`; needs no database file."""
    from pipeline import estimates

    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false; create schema panel").fetchall()
        for name, frame in frames.items():
            con.register("_frame", frame.to_arrow())
            con.execute(f"create table panel.{name} as select * from _frame").fetchall()
            con.unregister("_frame")
        if unit.kind == "monthly":
            return estimates.monthly_outcome(con, config, unit.outcomes[0])
        if unit.kind == "yearly":
            return estimates.yearly_outcome(con, config, unit.outcomes[0])
        return estimates.avain_outcomes(con, config, list(unit.outcomes))
    finally:
        con.close()


def combine(parts: list[dict[str, pl.DataFrame]], config: EvaluationConfig) -> dict[str, pl.DataFrame]:
    """The units' tables concatenated in unit order, NaN stored as NULL, small cells suppressed."""
    tables_parts: dict[str, list[pl.DataFrame]] = {name: [] for name in RESULT_TABLES}
    for part in parts:
        _extend(tables_parts, part)
    tables = {name: pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
              for name, frames in tables_parts.items()}
    tables = {name: _nan_to_null(frame) for name, frame in tables.items()}
    threshold = config.disclosure.min_cell_persons
    for name in ("did_estimates", "robustness"):
        if tables[name].height:
            tables[name] = suppress_small(tables[name], threshold)
    if tables["cost"].height:
        tables["cost"] = suppress_small(tables["cost"], threshold, COST_COLUMNS)
    return tables


def write_results(con: duckdb.DuckDBPyConnection, tables: dict[str, pl.DataFrame], run_id: str) -> None:
    """Insert the results tables under ``run_id`` in one transaction."""
    with _db.transaction(con):
        for table, frame in tables.items():
            if frame.height == 0:
                continue
            frame = frame.with_columns(pl.lit(run_id).alias("run_id"))
            cols = [r[0] for r in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'results' and table_name = ? order by ordinal_position", [table],
            ).fetchall()]
            frame = frame.select([c for c in cols if c in frame.columns])
            con.register("_frame", frame.to_arrow())
            con.execute(f"insert into results.{table} ({', '.join(frame.columns)}) select * from _frame")
            con.unregister("_frame")


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
