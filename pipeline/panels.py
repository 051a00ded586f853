"""Build the analysis panels from staging: the SQL models of ``sql/panel/``, in order.

Each model is one file named after the table it builds. The runner binds its
parameters from the :class:`~schemas.config.EvaluationConfig` (never formats them
into the SQL), writes the configuration's pilot schedule and age bands as tables
first (so the schedule in force is part of the database), and after each model
checks its grain: the declared unique key must be unique, or the build fails in
one line and the transaction rolls back.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from pipeline import db as _db
from pipeline.errors import KokeiluError
from schemas.config import EvaluationConfig


@dataclass(frozen=True)
class Model:
    """One SQL model: its table, the file that builds it, and its unique key."""

    table: str
    key: tuple[str, ...]
    params: tuple[str, ...]

    @property
    def file(self) -> str:
        """The SQL file under ``sql/``."""
        schema, name = self.table.split(".")
        return f"{schema}/{name}.sql"


MODELS: tuple[Model, ...] = (
    Model("panel.cohort", ("person_key",),
          ("panel_start", "baseline_end", "window_start", "window_end", "reference_date", "min_age", "max_age",
           "labour_market_codes")),
    Model("panel.person_month", ("person_key", "month"), ("panel_start",)),
    Model("panel.person_year", ("person_key", "year"), ()),
    Model("panel.avain_assessment", ("person_key", "arviointipvm"), ("first_pilot_year", "last_pilot_year")),
    Model("panel.municipality_month", ("kuntanumero", "month"), ("min_cell_persons",)),
)


class PanelError(KokeiluError):
    """A panel could not be built as specified."""

    exit_code = 1


def _month(text: str) -> dt.date:
    year, month = text.split("-")
    return dt.date(int(year), int(month), 1)


def parameters(config: EvaluationConfig) -> dict[str, Any]:
    """Every parameter the models bind, from the configuration."""
    c = config.cohort
    schedule = config.schedule()
    starts = [_month(s) for s, _ in schedule.values()] or [dt.date(2018, 1, 1)]
    ends = [_month(e) for _, e in schedule.values()] or [dt.date(2019, 12, 1)]
    return {
        "panel_start": _month(c.panel_start),
        "baseline_end": dt.date(c.baseline_year, 12, 1),
        "window_start": _month(c.support_window_start),
        "window_end": _month(c.support_window_end),
        "reference_date": c.age_reference_date,
        "min_age": c.age_min,
        "max_age": c.age_max,
        "labour_market_codes": list(c.labour_market_codes),
        "first_pilot_year": min(starts).year,
        "last_pilot_year": max(ends).year,
        "min_cell_persons": config.disclosure.min_cell_persons,
    }


def build_panels(con: duckdb.DuckDBPyConnection, config: EvaluationConfig) -> dict[str, int]:
    """Rebuild every panel in one transaction; return the rows of each table."""
    params = parameters(config)
    counts: dict[str, int] = {}
    with _db.transaction(con):
        con.execute("create schema if not exists panel")
        _reference_tables(con, config)
        for model in MODELS:
            con.execute(_db.sql_text(model.file), {k: params[k] for k in model.params})
            counts[model.table] = check_grain(con, model)
        con.execute(_db.sql_text("panel/_comments.sql"))
    return counts


def _reference_tables(con: duckdb.DuckDBPyConnection, config: EvaluationConfig) -> None:
    schedule = pl.DataFrame(
        [(code, _month(s), _month(e)) for code, (s, e) in config.schedule().items()],
        schema={"kuntanumero": pl.String, "start_month": pl.Date, "end_month": pl.Date}, orient="row",
    )
    bands = pl.DataFrame(
        [(lo, hi, f"{lo}-{hi}") for lo, hi in config.age_bands],
        schema={"min_age": pl.Int32, "max_age": pl.Int32, "label": pl.String}, orient="row",
    )
    for name, frame in (("pilot_schedule", schedule), ("age_bands", bands)):
        con.register("_ref", frame.to_arrow())
        con.execute(f"create or replace table panel.{name} as select * from _ref")
        con.unregister("_ref")


def check_grain(con: duckdb.DuckDBPyConnection, model: Model) -> int:
    """Rows of the model's table; :class:`PanelError` if its unique key is not unique."""
    key = ", ".join(model.key)
    rows = con.execute(f"select count(*) from {model.table}").fetchall()[0][0]
    duplicated = _db.duplicate_counts(con, model.table, model.key)[1]
    if duplicated:
        raise PanelError(f"{model.table}: {duplicated} duplicated ({key}) rows; its grain is one row per ({key})")
    return int(rows)
