"""What estimation reads from the panels: small frames reduced inside DuckDB.

Every query of the panels behind :mod:`pipeline.estimates` and the estimation
units of :mod:`pipeline.analysis` is here, in one module with no estimator
imports, so that reading can start before the (slow to import) estimators are
loaded. Persons are summed to municipality x period cells; where rows of
persons leave the database (the AVAIN assessments), pseudonyms are replaced by
ranks.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl

from pipeline import db as _db

SUBGROUP_COLUMNS = {"age_band": "c.age_band", "sex": "c.sex", "kotitaloustyyppi": "c.kotitaloustyyppi::varchar"}
"""The person subgroups: their column of ``panel.cohort c`` (as SQL) by subgroup name."""


def monthly_frame(con: duckdb.DuckDBPyConnection, outcome: str, *, where: str = "true",
                  params: list[Any] | None = None) -> pl.DataFrame:
    """Baseline-municipality x month sums of one monthly outcome over the persons ``where`` selects
    (``panel.cohort c``): kuntanumero, month, s, n, d.

    Sums are taken in exact integer cents, so they do not depend on the order in
    which DuckDB's threads add them up: reruns give identical results.
    """
    return _db.query_frame(con,
        f"""
        select pm.kuntanumero, pm.month, (sum(round(pm.{outcome} * 100)::hugeint) / 100)::double as s,
               count(*)::bigint as n,
               max(pm.in_pilot)::double as d
        from panel.person_month pm join panel.cohort c using (person_key)
        where {where}
        group by pm.kuntanumero, pm.month
        order by pm.kuntanumero, pm.month
        """, params or [],
    )


def yearly_sums(con: duckdb.DuckDBPyConnection, outcome: str, *, where: str = "true",
                params: list[Any] | None = None) -> pl.DataFrame:
    """The frame behind :func:`~pipeline.estimates.yearly_cells`: kuntanumero, month (the year), s, n, d."""
    return _db.query_frame(con,
        f"""
        select py.kuntanumero, py.year as month, sum(py.{outcome})::double as s, count(*)::bigint as n,
               max(py.in_pilot)::double as d
        from panel.person_year py join panel.cohort c using (person_key)
        where {where}
        group by py.kuntanumero, py.year
        order by py.kuntanumero, py.year
        """, params or [],
    )


def monthly_sums(con: duckdb.DuckDBPyConnection, outcomes: list[str]) -> dict[str, pl.DataFrame]:
    """Municipality x month sums of each monthly outcome, whole cohort and every subgroup level, in one scan.

    Per outcome a frame with ``dimension`` (``"all"`` or a key of
    :data:`SUBGROUP_COLUMNS`), ``level`` (the subgroup's value as text; null for
    ``"all"``), ``kuntanumero``, ``month``, ``s``, ``n`` and ``d``, ordered by
    dimension, level, municipality and month. The panel is grouped once by
    municipality, month and every subgroup column, and the exact integer-cent
    sums are rolled up from there, so each slice equals :func:`monthly_frame`
    with the matching ``where`` (levels without persons are absent).
    """
    dims = list(SUBGROUP_COLUMNS)
    keys = [f"g{i}" for i in range(len(dims))]
    attrs = ", ".join(f"{SUBGROUP_COLUMNS[d]} as {k}" for d, k in zip(dims, keys))
    fine = ", ".join(f"sum(round(pm.{o} * 100)::hugeint) as s{j}" for j, o in enumerate(outcomes))
    rolled = ", ".join(f"(sum(s{j})::hugeint / 100)::double as s{j}" for j in range(len(outcomes)))
    dimension = "case " + " ".join(f"when grouping({k}) = 0 then '{d}'" for d, k in zip(dims, keys)) + " else 'all' end"
    order = "case dimension " + " ".join(f"when '{d}' then {i + 1}" for i, d in enumerate(dims)) + " else 0 end"
    sets = ", ".join(["(kuntanumero, month)"] + [f"({k}, kuntanumero, month)" for k in keys])
    frame = _db.query_frame(con,
        f"""
        with fine as (
            select pm.kuntanumero, pm.month, {attrs}, {fine}, count(*)::bigint as n, max(pm.in_pilot) as d
            from panel.person_month pm join panel.cohort c using (person_key)
            group by all
        ), rolled as (
            select {dimension} as dimension, coalesce({", ".join(keys)}) as level, kuntanumero, month,
                   {rolled}, sum(n)::bigint as n, max(d)::double as d
            from fine
            group by grouping sets ({sets})
        ), final as (
            select * from rolled where dimension = 'all' or level is not null
        )
        select * from final order by {order}, level, kuntanumero, month
        """,
    )
    return {o: frame.select("dimension", "level", "kuntanumero", "month", pl.col(f"s{j}").alias("s"), "n", "d")
            for j, o in enumerate(outcomes)}


def avain_assessments(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The assessments before and during the pilot, by person and date: what AVAIN estimates read.

    Pseudonyms do not leave the database: ``person_key`` is replaced by its rank,
    which keeps the order of the rows and the counts of persons.
    """
    return _db.query_frame(con,
        "select dense_rank() over (order by person_key)::integer as person_key, kuntanumero, period, in_pilot, "
        "avain_situation, avain_goal_achieved, client_present "
        "from panel.avain_assessment where period in ('before', 'during') "
        "order by panel.avain_assessment.person_key, arviointipvm, panel.avain_assessment.rowid",
    )
