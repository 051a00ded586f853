r"""Randomization inference for the joint test of the event-study leads.

The CRV1 Wald test of the leads, referred to F(L, G-1), over-rejects badly with
few treated clusters: its covariance of the leads rests on the scores of the six
treated municipalities, one lead at a time (in the simulation of
``docs/inference_simulation.md`` it rejects a true null most of the time). Its
statistic is still a sensible measure of how far the treated municipalities'
pre-period path departs from the comparison municipalities'. So the statistic is
kept and only its reference distribution is replaced: the rows of the event-time
matrix (each pilot municipality's schedule) are given to other municipalities at
random, keeping the number treated and every schedule, and

.. math::

    p = \frac{1 + \#\{r : W_r \ge W_{obs}\}}{1 + R}

over R seeded reassignments. Under the sharp null that no municipality's
pre-period path depends on whether it was chosen for the pilot, p is exact in
the Monte-Carlo sense (valid at any R).

Only the pre-period matters for the leads: with every post-period observation of
a treated municipality absorbed by its lag dummies, the lead estimates equal
those of the event study fitted on the months before the first start, so each
reassignment is fitted on those months only (a 31 x 12 cell matrix for the
pilot).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.estimation.cells import Cells
from pipeline.estimation.event_study import event_dummies, event_levels, event_study_cells
from pipeline.estimation.twfe import fit_cells


@dataclass(frozen=True)
class PretrendRandomization:
    """The lead test's statistic with its randomization p-value."""

    statistic: float
    p_value: float
    draws: int
    n_periods: int


def pretrend_randomization(cells: Cells, event_time: np.ndarray, *, draws: int = 999, seed: int = 0,
                           reference: int = -1) -> PretrendRandomization:
    """F statistic of the leads (CRV1 Wald / L) and its p-value over ``draws`` reassignments of the schedules."""
    E = np.asarray(event_time, dtype=float)
    treated_any = ~np.isnan(E)
    starts = np.nonzero(np.any(treated_any & (E >= 0), axis=0))[0]
    cut = int(starts[0]) if starts.size else cells.n_periods
    keep = np.arange(cells.n_periods) < cut
    pre = Cells(cells.clusters, cells.times[keep], cells.n, cells.sums[:, keep], np.zeros((cells.n_clusters, cut)))
    E_pre = E[:, keep]

    levels = event_levels(E_pre, reference)
    lead = levels < reference
    n, sums = pre.n.astype(float), pre.sums.astype(float)

    def raw_wald(rows: np.ndarray) -> float:
        # the small-sample factor is the same for every reassignment: rank by the raw Wald statistic
        fit = fit_cells(n, sums, event_dummies(E_pre[rows], levels))
        b = fit.beta[lead]
        return float(b @ np.linalg.solve(fit.vcov_raw[np.ix_(lead, lead)], b))

    G = cells.n_clusters
    observed_raw = raw_wald(np.arange(G))
    statistic = event_study_cells(pre, E_pre, reference=reference, cv3=False).pretrend_test().statistic
    rng = np.random.default_rng(seed)
    exceed = 0
    for _ in range(draws):
        perm = rng.permutation(G)
        try:
            w = raw_wald(perm)
        except np.linalg.LinAlgError:
            w = np.inf                           # a degenerate reassignment counts against the observed one
        exceed += bool(w >= observed_raw * (1 - 1e-12))
    return PretrendRandomization(statistic=statistic, p_value=(1 + exceed) / (1 + draws), draws=draws, n_periods=cut)
