r"""Clean-control difference in differences: each treated cluster's treated periods against never-treated clusters.

Estimand
--------
The average effect on the treated over the treated unit-periods (ATT), each
unit-period weighted equally:

.. math::

    \theta = \frac{\sum_{g \in \mathcal T} \sum_{t \in P_g} n_g \,\tau_{gt}}{\sum_{g \in \mathcal T} n_g |P_g|}

where :math:`P_g` are the periods in which cluster *g* is treated. Each
:math:`\tau_{gt}` is estimated by the change of *g*'s mean outcome from its own
pre-treatment periods (all periods before its first treated period) to *t*,
minus the same change in the pooled never-treated clusters over the same
periods. Only never-treated clusters serve as controls and only pre-treatment
periods as baselines, so the estimator never compares a treated period with an
already-treated or formerly-treated one: unlike TWFE with one dummy, it stays an
average of the cluster-period effects with positive weights when effects differ
by cluster and over time and when treatment switches off (Tornio's exit). It is
the imputation estimator of Borusyak, Jaravel and Spiess (2024) with the fixed
effects estimated from never-treated clusters and each treated cluster's own
pre-period, and the DID_M of de Chaisemartin and D'Haultfœuille (2020) with
all pre-periods as the baseline instead of the last one.

Inference
---------
The estimate is a sum of cluster-level linear functions of the cluster's own
sums, :math:`\hat\theta = \sum_g a_g`. Its variance is estimated from the
spread of the :math:`a_g` around their expectation under a common effect
(treated: proportional to :math:`n_g|P_g|`; controls: proportional to
:math:`n_g`), with the G/(G-1) factor, and intervals from t(G_T - 1) where G_T
is the number of treated clusters (the treated clusters carry most of the
variance; with one treated cluster its idiosyncratic variance cannot be
estimated from itself, so the variance comes from placebo estimates giving the
treated cluster's path to each control in turn, Conley-Taber style, with
t(G_C - 1)). Clusters differ in size, and a small control's placebo estimate is
far noisier than a large treated cluster's estimate, so the squared placebo
estimates are modelled as ``A + B / n_c`` (a size-independent shock plus
sampling noise; non-negative least squares) and the variance is read off at
the treated cluster's size -- the heteroskedasticity correction of Ferman and
Pinto (2019). With equal sizes it reduces to the Conley-Taber variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import special
from scipy.optimize import nnls

from pipeline.did.cells import Cells


@dataclass(frozen=True)
class CleanControlsResult:
    """ATT over treated cluster-periods against never-treated clusters."""

    estimate: float
    std_error: float
    t_stat: float
    p_value: float
    ci_low: float
    ci_high: float
    df: int
    n_obs: int
    n_units: int
    n_clusters: int
    n_treated_clusters: int
    by_cluster: dict[str, float]
    path: str = "aggregated"

    def tidy(self) -> pl.DataFrame:
        """One row with the estimate, its inference and the sample sizes."""
        return pl.DataFrame([{
            "estimate": self.estimate, "std_error": self.std_error, "t_stat": self.t_stat, "p_value": self.p_value,
            "ci_low": self.ci_low, "ci_high": self.ci_high, "df": self.df, "n_obs": self.n_obs,
            "n_units": self.n_units, "n_clusters": self.n_clusters, "n_treated_clusters": self.n_treated_clusters,
            "path": self.path,
        }])


def contribution_weights(cells: Cells) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(G, T) weights L with a_g = L_g . S_g, the (G,) expectation weights and the treated mask."""
    treat = cells.treat != 0
    treated = treat.any(axis=1)
    controls = ~treated
    if not treated.any() or not controls.any():
        raise ValueError("clean controls need at least one treated and one never-treated cluster")
    n = cells.n.astype(float)
    N_c = n[controls].sum()
    W = float(sum(n[g] * treat[g].sum() for g in np.nonzero(treated)[0]))
    L = np.zeros(cells.sums.shape)
    weight = np.zeros(cells.n_clusters)
    control_weight_t = np.zeros(cells.n_periods)
    for g in np.nonzero(treated)[0]:
        first = int(np.argmax(treat[g]))
        if first == 0:
            raise ValueError(f"cluster {cells.clusters[g]} is treated from the first period: no pre-period")
        pre = np.arange(cells.n_periods) < first
        P = treat[g]
        lam = P.astype(float) - P.sum() * pre / pre.sum()
        L[g] = lam / W
        weight[g] = n[g] * P.sum() / W
        control_weight_t += n[g] * lam
    L[controls] = -control_weight_t / (N_c * W)
    weight[controls] = n[controls] / N_c
    return L, weight, treated


def contributions(cells: Cells) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Cluster contributions a_g (:func:`contribution_weights` applied to the sums), their expectation weights,
    the treated mask and the estimate."""
    L, weight, treated = contribution_weights(cells)
    a = np.einsum("gt,gt->g", L, cells.sums.astype(float))
    return a, weight, treated, float(a.sum())


def clean_controls_cells(cells: Cells, *, alpha: float = 0.05, placebo_variance: bool | None = None) -> CleanControlsResult:
    """The clean-control DiD from cluster x period sums (see the module docstring)."""
    a, weight, treated, theta = contributions(cells)
    G, G_t = cells.n_clusters, int(treated.sum())
    G_c = G - G_t
    theta_t, theta_c = a[treated].sum(), a[~treated].sum()
    if placebo_variance is None:
        placebo_variance = G_t < 2
    if placebo_variance:
        var = _placebo_variance(cells, treated)
        df = G_c - 1
    else:
        dev_t = a[treated] - weight[treated] * theta_t
        dev_c = a[~treated] - weight[~treated] * theta_c
        var = G / (G - 1) * (float(dev_t @ dev_t) + float(dev_c @ dev_c))
        df = G_t - 1
    se = float(np.sqrt(var))
    q = float(special.stdtrit(df, 1 - alpha / 2))  # scipy.stats.t.ppf without its argument handling
    t_stat = theta / se if se > 0 else float("nan")
    by_cluster = {}
    for g in np.nonzero(treated)[0]:
        one = treated.copy()
        one[:] = False
        one[g] = True
        sub = cells.subset(one | ~treated)
        by_cluster[str(cells.clusters[g])] = contributions(sub)[3]
    return CleanControlsResult(
        estimate=theta, std_error=se, t_stat=t_stat, p_value=float(2 * special.stdtr(df, -abs(t_stat))),
        ci_low=theta - q * se, ci_high=theta + q * se, df=df, n_obs=cells.n_obs, n_units=int(cells.n.sum()),
        n_clusters=G, n_treated_clusters=G_t, by_cluster=by_cluster,
    )


def _placebo_variance(cells: Cells, treated: np.ndarray) -> float:
    """Variance of the estimate when each control in turn gets the treated clusters' paths (one treated cluster)."""
    g = int(np.nonzero(treated)[0][0])
    controls = np.nonzero(~treated)[0]
    estimates = []
    for c in controls:
        treat = np.zeros_like(cells.treat)
        treat[c] = cells.treat[g]
        keep = ~treated
        sub = Cells(cells.clusters[keep], cells.times, cells.n[keep], cells.sums[keep], treat[keep])
        estimates.append(contributions(sub)[3])
    est = np.asarray(estimates)
    sizes = cells.n[controls].astype(float)
    if np.ptp(sizes) == 0:
        return float(np.mean(est ** 2))
    design = np.column_stack([np.ones_like(sizes), 1.0 / sizes])
    (a, b), _ = nnls(design, est ** 2)
    return float(a + b / cells.n[g])
