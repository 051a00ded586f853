"""Every estimate of an evaluation, from the panels to the rows of ``results.*``.

This module decides *what* is estimated (outcomes, estimators, subgroups,
inference) from the :class:`~schemas.config.EvaluationConfig`; *how* lives in
:mod:`pipeline.estimation` (which knows nothing of Kela) and
:mod:`pipeline.inference`. Disclosure control is applied here, once, to every row
before it is written: a row resting on fewer persons than the threshold keeps
its keys and is marked ``suppressed`` with its numbers withheld.

The work splits into independent units (:class:`Unit`: one per monthly or yearly
outcome, one for the AVAIN outcomes). :func:`units_inputs` reduces the panels to
what each unit estimates from, inside the database (municipality x period sums of
the whole cohort and of every subgroup level; the AVAIN assessments), reading the
person x month panel once for all monthly outcomes; :func:`run_unit` estimates a
unit from those small frames alone, so it can run in another process or on
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
from pipeline import readers
from pipeline.imports import import_in_background
from schemas.config import AVAIN_OUTCOMES, MONTHLY_OUTCOMES, YEARLY_OUTCOMES, EvaluationConfig

NUMERIC_RESULT_COLUMNS = (
    "estimate", "std_error", "ci_low", "ci_high", "p_value", "p_value_wild_bootstrap",
    "ci_low_wild_bootstrap", "ci_high_wild_bootstrap", "p_value_randomization", "std_error_cv3",
)
RESULT_TABLES = (
    "did_estimates", "event_study", "pretrend_tests", "inference", "placebo_size", "robustness", "cost",
)
COST_COLUMNS = (
    "effect_per_person_month", "effect_per_member", "effect_per_member_ci_low", "effect_per_member_ci_high",
    "effect_total", "effect_total_ci_low", "effect_total_ci_high", "observed_total", "counterfactual_total",
    "change_share",
)
ESTIMATOR_MODULES = ("pipeline.estimates", "pipeline.robustness", "pipeline.inference.placebo",
                     "pipeline.estimation.sdid", "pipeline.estimation.honest")
"""What :func:`run_unit` imports (SciPy among them: seconds), imported by :func:`estimate_all` while
DuckDB reads the units' inputs."""


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
    warm = import_in_background(ESTIMATOR_MODULES, name="kokeilu-import-estimators")
    units = estimation_units(con, config)
    inputs = units_inputs(con, units)
    warm.join()
    return combine([run_unit(frames, config, unit) for unit, frames in zip(units, inputs)], config)


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
    """What one unit estimates from, read from the database (see :func:`units_inputs`)."""
    return units_inputs(con, [unit])[0]


def units_inputs(con: duckdb.DuckDBPyConnection, units: list[Unit]) -> list[dict[str, pl.DataFrame]]:
    """What each unit estimates from, reduced inside the database, in the order of ``units``.

    Monthly units get ``cells``, their outcome's :func:`~pipeline.readers.monthly_sums`
    (all monthly outcomes come from one scan of the panel); yearly units get
    ``cells``, :func:`~pipeline.readers.yearly_sums`; the AVAIN unit gets
    ``avain_assessment``, :func:`~pipeline.readers.avain_assessments` (persons as
    ranks: pseudonyms do not leave the database).
    """
    monthly = [unit.outcomes[0] for unit in units if unit.kind == "monthly"]
    sums = readers.monthly_sums(con, monthly) if monthly else {}
    inputs: list[dict[str, pl.DataFrame]] = []
    for unit in units:
        if unit.kind == "monthly":
            inputs.append({"cells": sums[unit.outcomes[0]]})
        elif unit.kind == "yearly":
            inputs.append({"cells": readers.yearly_sums(con, unit.outcomes[0])})
        else:
            inputs.append({"avain_assessment": readers.avain_assessments(con)})
    return inputs


def run_unit(frames: dict[str, pl.DataFrame], config: EvaluationConfig, unit: Unit) -> dict[str, pl.DataFrame]:
    """Every estimate of one unit from its :func:`unit_inputs`; needs no database."""
    from pipeline import estimates

    if unit.kind == "monthly":
        return estimates.monthly_outcome(frames["cells"], config, unit.outcomes[0])
    if unit.kind == "yearly":
        return estimates.yearly_outcome(frames["cells"], config, unit.outcomes[0])
    return estimates.avain_estimates(frames["avain_assessment"], config, list(unit.outcomes))


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
