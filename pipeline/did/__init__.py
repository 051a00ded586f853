"""Difference-in-differences estimators for long panels with few clusters: ``from pipeline import did``.

The estimators know nothing about Kela: they take any long panel (polars, pandas
or a DuckDB relation) with named unit, time, treatment and cluster columns,
wrapped once in a :class:`Panel` that checks it::

    panel = did.Panel(frame, unit="county", time="year", treatment="treated")   # cluster defaults to the unit
    fit = did.twfe(panel, "lemp")
    fit.tidy()                       # term, estimate, std_error, statistic, df, p_value, ci_low, ci_high, ...
    fit.wild_bootstrap(draws=9_999, seed=1)
    fit.randomization_test()         # the panel's own treatment paths, reassigned

Every estimator (``twfe``, ``event_study``, ``clean_controls``, ``synthetic_did``,
``did_2x2``) returns a :class:`Fit`; every inference procedure is a method of it
returning an :class:`InferenceResult` (see :mod:`pipeline.did.fit`).

Two paths, one answer
---------------------
*Aggregated.* When the panel is balanced (every unit once in every period), each
unit belongs to one cluster, and the regressors are constant within
cluster x period, the two-way within transformation is exact in one pass and
the demeaned regressors depend on (cluster, period) only. The unit + time
fixed-effects coefficient, the CRV1 cluster scores and the leave-one-cluster-out
(jackknife) estimates are then functions of the (G, T) matrix of outcome sums
S_gt and the units per cluster n_g (:class:`Cells`): one GROUP BY, then O(G·T)
work. ``path="auto"`` takes this path whenever the panel qualifies.

*General.* Otherwise (unbalanced panels, units moving between clusters),
linearmodels ``PanelOLS(entity_effects=True, time_effects=True)`` with clustered
covariance. The result records which path ran and, on fallback, why.

Small-sample convention
-----------------------
Both paths scale the bare CRV1 sandwich by the same factor, in one function
(:func:`~pipeline.did.results.small_sample_factor`), that of pyfixest's
default ``ssc()``:

    c = G/(G-1) · (N-1)/(N-K),   K = regressors + T

(the T time levels count; the unit effects, nested in the clusters, do not:
pyfixest counts U + T - 1 levels, removes the U nested ones and adds one back).
If units are not nested in the clusters, K = regressors + U + T - 1. Tests,
p-values and intervals use t(G-1), never the normal. The cluster-jackknife
standard error (``std_error_cv3``) is the CV3J of MacKinnon, Nielsen and Webb
(2023), centred on the mean of the leave-one-cluster-out estimates.
"""

from __future__ import annotations

from pipeline.did.cells import Cells
from pipeline.did.comparison import CleanControlsFit, SyntheticDidFit, clean_controls, synthetic_did
from pipeline.did.data import Panel
from pipeline.did.regression import Did2x2Fit, EventStudyFit, TwfeFit, did_2x2, event_study, twfe
from pipeline.did.fit import TIDY_COLUMNS, Fit, InferenceNotAvailable, InferenceResult
from pipeline.did.honest_api import honest
from pipeline.did.panel import NotAggregable
from pipeline.did.staggered import AggregateFit, GroupTimeFit, group_time

__all__ = [
    "TIDY_COLUMNS",
    "AggregateFit",
    "Cells",
    "CleanControlsFit",
    "Did2x2Fit",
    "EventStudyFit",
    "Fit",
    "GroupTimeFit",
    "InferenceNotAvailable",
    "InferenceResult",
    "NotAggregable",
    "Panel",
    "SyntheticDidFit",
    "TwfeFit",
    "clean_controls",
    "did_2x2",
    "event_study",
    "group_time",
    "honest",
    "synthetic_did",
    "twfe",
]
