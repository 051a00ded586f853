"""Difference-in-differences estimators for long panels with few clusters.

The estimators know nothing about Kela: they take any long panel (polars or
pandas) with named unit, time, outcome, treatment and cluster columns.

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
from pipeline.did.event_study import event_study, event_study_cells
from pipeline.did.panel import NotAggregable, cells_from_panel, cells_from_sums
from pipeline.did.results import (
    EventStudyResult,
    TwfeResult,
    WaldTest,
    count_params,
    small_sample_factor,
)
from pipeline.did.twfe import twfe, twfe_cells

__all__ = [
    "Cells",
    "EventStudyResult",
    "NotAggregable",
    "TwfeResult",
    "WaldTest",
    "cells_from_panel",
    "cells_from_sums",
    "count_params",
    "event_study",
    "event_study_cells",
    "small_sample_factor",
    "twfe",
    "twfe_cells",
]
