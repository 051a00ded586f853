r"""The balance table: pilot and comparison cohorts compared on their baseline covariates.

Conditional parallel trends assume that, within strata of the baseline covariates
(``EvaluationConfig.covariates``, columns of ``panel.cohort``), pilot and
comparison cohorts would have moved alike without the pilot. The balance table
shows how far apart the two cohorts' compositions are before and after the
comparison cohort is reweighted to the pilot's composition.

For each level :math:`\ell` of a discrete covariate (each covariate with a count,
such as ``baseline_receipt_months``: its mean) it gives the share in the pilot
cohort :math:`\bar x_1`, in the comparison cohort :math:`\bar x_0`, in the
comparison cohort weighted :math:`\bar x_{0w} = \sum_{i \in C} w_i x_i / \sum_{i
\in C} w_i`, and the standardized differences

.. math::

    d = \frac{\bar x_1 - \bar x_0}{\sqrt{(s_1^2 + s_0^2)/2}}, \qquad
    d_w = \frac{\bar x_1 - \bar x_{0w}}{\sqrt{(s_1^2 + s_0^2)/2}},

with :math:`s_1^2, s_0^2` the unweighted variances of the two cohorts
(:math:`\bar x (1 - \bar x)` for a share, the population variance for a mean):
the same denominator before and after weighting, so that :math:`d_w` moves only
with the difference of means.

The weights are the odds weights of the average effect on the treated from a
*saturated* propensity score over the strata s (every combination of the
discrete covariates' levels): a comparison member of stratum s gets

.. math::

    w_s = \frac{\hat p(s)}{1 - \hat p(s)} = \frac{n_{1s}}{n_{0s}},

pilot members weight 1. These are the weights of the IPW estimator
(``group_time_frame(..., method="ipw")``) when its covariates are the stratum
dummies; with stratum dummies the outcome regression is the stratum mean too,
so ``"reg"``, ``"ipw"`` and ``"dr"`` all estimate
:math:`\bar{\Delta Y}_1 - \sum_s (n_{1s}/n_1) \bar{\Delta Y}_{0s}`. After
weighting every discrete covariate's shares equal the pilot's exactly, unless
some pilot members sit in strata without a comparison member (no common
support): those cannot be matched, the remaining :math:`d_w` shows them, and
``pilot_persons_unmatched`` counts them at each level. With many covariates and
few persons the strata thin out and more pilot members go unmatched: the table
says so rather than hiding it.

Disclosure control: a row resting on fewer than
``config.disclosure.min_cell_persons`` persons in either cohort has its counts
and numbers withheld (NULL) and ``suppressed`` true. Because a covariate's
shares add up to one, a covariate with exactly one such level also has its
next-smallest level withheld (secondary suppression), so the hidden cell cannot
be recovered by subtraction. An unmatched count of 1 to threshold - 1 persons is
withheld on its own.
"""

from __future__ import annotations

import duckdb
import polars as pl

from pipeline import db as _db
from schemas.config import DISCRETE_COVARIATES, EvaluationConfig

BALANCE_COLUMNS: tuple[str, ...] = (
    "covariate", "level", "statistic", "pilot_persons", "comparison_persons", "pilot_value", "comparison_value",
    "comparison_value_weighted", "std_diff", "std_diff_weighted", "pilot_persons_unmatched", "strata", "suppressed",
)
"""Columns of :func:`balance_table` (and of ``results.balance`` besides ``run_id``), in order."""

WITHHELD: tuple[str, ...] = (
    "pilot_persons", "comparison_persons", "pilot_value", "comparison_value", "comparison_value_weighted",
    "std_diff", "std_diff_weighted", "pilot_persons_unmatched",
)
"""The columns withheld (NULL) in a suppressed row."""

MISSING_LEVEL = "(missing)"
_FLOATS = ("pilot_value", "comparison_value", "comparison_value_weighted", "std_diff", "std_diff_weighted")


def balance_table(con: duckdb.DuckDBPyConnection, config: EvaluationConfig) -> pl.DataFrame:
    """Pilot vs comparison cohort on each baseline covariate level, before and after weighting.

    Parameters
    ----------
    con
        A database with ``panel.cohort`` built.
    config
        ``covariates`` (the rows, and the discrete ones the weighting strata) and
        ``disclosure.min_cell_persons``.

    Returns
    -------
    pl.DataFrame
        One row per covariate and level (``level = "mean"`` for a count), the
        columns of :data:`BALANCE_COLUMNS`, in the order of ``config.covariates``.

    Examples
    --------
    >>> from pipeline.balance import balance_table  # doctest: +SKIP
    >>> balance_table(con, EvaluationConfig()).filter(pl.col("covariate") == "sex")  # doctest: +SKIP
    """
    covariates = list(config.covariates)
    strata = [c for c in covariates if c in DISCRETE_COVARIATES]
    cohort = _cohort(con, covariates).with_columns(stratum_weights(pl.col("treated"), strata))
    cohort = cohort.with_columns(_unmatched(pl.col("treated"), strata))
    label = " x ".join(strata) if strata else "none"
    frames = [_rows(cohort, c) for c in covariates]
    if not frames:
        return pl.DataFrame(schema=_schema())
    table = pl.concat(frames).with_columns(pl.lit(label).alias("strata"))
    return suppress_cells(table, config.disclosure.min_cell_persons).select(BALANCE_COLUMNS)


def stratum_weights(treated: pl.Expr, strata: list[str]) -> pl.Expr:
    """Weight ``w``: 1 for pilot members, n_pilot(s) / n_comparison(s) for comparison members of stratum s."""
    if not strata:
        return pl.lit(1.0).alias("w")
    # comparison members of a stratum without pilot members weigh 0; pilot members of a stratum without
    # comparison members keep weight 1 but nothing in the comparison cohort can stand for them
    n_pilot = treated.cast(pl.Float64).sum().over(strata)
    n_comparison = (~treated).cast(pl.Float64).sum().over(strata)
    return pl.when(treated).then(1.0).otherwise(n_pilot / n_comparison).alias("w")


def suppress_cells(table: pl.DataFrame, threshold: int) -> pl.DataFrame:
    """Withhold rows under ``threshold`` persons in either cohort, and a second level where one alone is withheld."""
    persons = pl.min_horizontal("pilot_persons", "comparison_persons")
    primary = persons < threshold
    table = table.with_columns(primary.alias("suppressed"), persons.alias("_persons"))
    lone = pl.col("suppressed").sum().over("covariate") == 1
    open_rank = pl.when(~pl.col("suppressed")).then(pl.col("_persons")).rank("ordinal").over("covariate")
    secondary = lone & (pl.col("statistic") == "share") & ~pl.col("suppressed") & (open_rank == 1)
    table = table.with_columns((pl.col("suppressed") | secondary).alias("suppressed")).drop("_persons")
    unmatched = pl.col("pilot_persons_unmatched")
    table = table.with_columns(pl.when(unmatched.is_between(1, threshold - 1)).then(None).otherwise(unmatched)
                               .alias("pilot_persons_unmatched"))
    return table.with_columns([pl.when(pl.col("suppressed")).then(None).otherwise(pl.col(c)).alias(c)
                               for c in WITHHELD])


def _unmatched(treated: pl.Expr, strata: list[str]) -> pl.Expr:
    """True for a pilot member whose stratum has no comparison member (no common support)."""
    if not strata:
        return pl.lit(False).alias("unmatched")
    return (treated & ((~treated).sum().over(strata) == 0)).alias("unmatched")


def _cohort(con: duckdb.DuckDBPyConnection, covariates: list[str]) -> pl.DataFrame:
    """treated and the covariates of every cohort member; discrete ones as text levels."""
    columns = ", ".join(
        f"coalesce({c}::varchar, '{MISSING_LEVEL}') as {c}" if c in DISCRETE_COVARIATES else f"{c}::double as {c}"
        for c in covariates
    )
    return _db.query_frame(con, f"select treated{', ' if columns else ''}{columns} from panel.cohort")


def _rows(cohort: pl.DataFrame, covariate: str) -> pl.DataFrame:
    """The balance rows of one covariate: one per level, or one ``mean`` row for a count."""
    if covariate in DISCRETE_COVARIATES:
        levels = sorted(cohort[covariate].unique().to_list())
        indicators = [(level, (pl.col(covariate) == level).cast(pl.Float64)) for level in levels]
        statistic = "share"
    else:
        indicators = [("mean", pl.col(covariate))]
        statistic = "mean"
    return pl.concat([_row(cohort, covariate, level, x, statistic) for level, x in indicators])


def _row(cohort: pl.DataFrame, covariate: str, level: str, x: pl.Expr, statistic: str) -> pl.DataFrame:
    pilot, comparison = pl.col("treated"), ~pl.col("treated")
    counted = x > 0 if statistic == "share" else pl.lit(True)
    out = cohort.select(
        pl.lit(covariate).alias("covariate"),
        pl.lit(level).alias("level"),
        pl.lit(statistic).alias("statistic"),
        (pilot & counted).sum().cast(pl.Int64).alias("pilot_persons"),
        (comparison & counted).sum().cast(pl.Int64).alias("comparison_persons"),
        (pl.col("unmatched") & counted).sum().cast(pl.Int64).alias("pilot_persons_unmatched"),
        x.filter(pilot).mean().alias("pilot_value"),
        x.filter(comparison).mean().alias("comparison_value"),
        ((x * pl.col("w")).filter(comparison).sum() / pl.col("w").filter(comparison).sum())
        .alias("comparison_value_weighted"),
        x.filter(pilot).var(ddof=0).alias("_v1"),
        x.filter(comparison).var(ddof=0).alias("_v0"),
    )
    scale = ((pl.col("_v1") + pl.col("_v0")) / 2).sqrt()
    return out.with_columns(
        pl.when(scale > 0).then((pl.col("pilot_value") - pl.col("comparison_value")) / scale).alias("std_diff"),
        pl.when(scale > 0).then((pl.col("pilot_value") - pl.col("comparison_value_weighted")) / scale)
        .alias("std_diff_weighted"),
    ).drop("_v1", "_v0").with_columns(pl.col(_FLOATS).cast(pl.Float64).fill_nan(None))


def _schema() -> dict[str, pl.DataType]:
    return {c: (pl.Int64 if "_persons" in c else pl.Float64 if c in _FLOATS
                else pl.Boolean if c == "suppressed" else pl.String) for c in BALANCE_COLUMNS}
