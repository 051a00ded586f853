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

from pipeline.did.cells import Cells
from pipeline.did.event_study import event_dummies, event_levels, event_study_cells
from pipeline.did.twfe import demean_cells

_BATCH = 256  # reassignments fitted together


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
    statistic = event_study_cells(pre, E_pre, reference=reference, cv3=False).pretrend_test().statistic
    G = cells.n_clusters
    rng = np.random.default_rng(seed)
    perms = np.stack([np.arange(G)] + [rng.permutation(G) for _ in range(draws)])
    # the small-sample factor is the same for every reassignment: rank by the raw Wald statistic
    raw = np.concatenate([_raw_wald(n, sums, event_dummies(E_pre[rows], levels).swapaxes(0, 1), lead)
                          for rows in np.array_split(perms, range(_BATCH, len(perms), _BATCH))])
    exceed = int(np.sum(raw[1:] >= raw[0] * (1 - 1e-12)))
    return PretrendRandomization(statistic=statistic, p_value=(1 + exceed) / (1 + draws), draws=draws, n_periods=cut)


def _raw_wald(n: np.ndarray, sums: np.ndarray, X: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """Raw CRV1 Wald statistic of the leads for each regressor set X (R, K, G, T), fitted together.

    The fit of :func:`~pipeline.did.twfe.fit_cells` for a batch; a
    reassignment whose leads' covariance is singular gets +inf (it counts
    against the observed one), one whose regressors are collinear raises.
    """
    R, K, G, T = X.shape
    Xt = demean_cells(n, X.reshape(R * K, G, T)).reshape(R, K, G * T)
    A = (Xt * np.repeat(n, T)) @ Xt.transpose(0, 2, 1)
    rank = np.linalg.matrix_rank(A)
    if np.any(rank < K):
        raise ValueError(
            f"regressors are collinear with the unit and period effects: rank {int(rank.min())} < {K}"
        )
    beta = np.linalg.solve(A, Xt @ sums.reshape(G * T, 1))[:, :, 0]
    ybar_t = sums.sum(axis=0) / n.sum()
    fitted = np.einsum("rk,rkj->rj", beta, Xt).reshape(R, G, T)
    resid = (sums - n[:, None] * (ybar_t[None, None, :] + fitted)).reshape(R, G * T)
    scores = np.einsum("rkgt,rgt->rgk", Xt.reshape(R, K, G, T), resid.reshape(R, G, T))
    Ainv = np.linalg.inv(A)
    V = Ainv @ (scores.transpose(0, 2, 1) @ scores) @ Ainv
    V = (V + V.transpose(0, 2, 1)) / 2
    b = beta[:, lead]
    VL = V[:, lead][:, :, lead]
    out = np.full(R, np.inf)
    for r in range(R):
        try:
            out[r] = float(b[r] @ np.linalg.solve(VL[r], b[r]))
        except np.linalg.LinAlgError:
            pass
    return out
