r"""Comparison estimators on a :class:`~pipeline.did.data.Panel`: ``clean_controls`` and ``synthetic_did``.

Both compare treated units with never-treated ones chosen or weighted by design
rather than by regression: the clean-control estimator needs the aggregated
design (cluster x period sums), synthetic DiD a block design. Inference is on
the fit, as for the regression estimators (:mod:`pipeline.did.regression`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.did.clean_controls import clean_controls_cells, contributions
from pipeline.did.data import Panel
from pipeline.did.fit import (
    Fit,
    InferenceResult,
    bootstrap_result,
    check_draws,
    check_panel,
    check_weights,
    randomization_result,
)
from pipeline.did.inference import clean_controls as _cc
from pipeline.did.inference.randomization import design_paths
from pipeline.did.inference.synthetic import sdid_randomization
from pipeline.did.panel import NotAggregable, aggregate, prepare
from pipeline.did.regression import _explicit
from pipeline.did.results import jackknife_se, t_inference
from pipeline.did.sdid import block_matrix, sdid_matrix


# ---------------------------------------------------------- clean controls
class CleanControlsFit(Fit):
    """Clean-control DiD: the ATT over treated cluster-periods against never-treated clusters."""

    estimator = "clean_controls"
    inference = ("cv3", "wild_bootstrap", "randomization_test")

    def __init__(self, panel: Panel, outcome: str, result: Any, cells: Any, alpha: float) -> None:
        super().__init__(outcome=outcome, result=result, path="aggregated", fallback_reason=None, alpha=alpha)
        self.panel, self.cells = panel, cells

    def _rows(self) -> list[dict[str, Any]]:
        r = self.result
        return [{"term": "att", "estimate": r.estimate, "std_error": r.std_error, "statistic": r.t_stat,
                 "df": r.df, "p_value": r.p_value, "ci_low": r.ci_low, "ci_high": r.ci_high, "n_obs": r.n_obs,
                 "n_units": r.n_units, "n_clusters": r.n_clusters, "n_treated_clusters": r.n_treated_clusters,
                 "path": "aggregated"}]

    def cv3(self) -> InferenceResult:
        """Cluster jackknife of the estimate (NaN if leaving out some cluster leaves no treated or no control)."""
        G = self.cells.n_clusters
        leave = np.full(G, np.nan)
        for g in range(G):
            keep = np.ones(G, dtype=bool)
            keep[g] = False
            try:
                leave[g] = contributions(self.cells.subset(keep))[3]
            except ValueError:
                pass
        se = float(jackknife_se(leave)[0])
        inf = t_inference(self.result.estimate, se, self.result.df, self.alpha)
        return InferenceResult("cv3", inf.t_stat, inf.p_value, inf.ci_low, inf.ci_high, None, False)

    def wild_bootstrap(self, *, restricted: bool = True, weights: str = "webb", draws: int = 9_999, seed: int = 0,
                       null: float = 0.0) -> InferenceResult:
        """Wild cluster bootstrap-t of H0: ATT = null with the estimator's own variance (WCR or WCU)."""
        check_weights(weights)
        check_draws(draws)
        res = _cc.wild_bootstrap(self.cells, null=null, draws=draws, weights=weights, restricted=restricted,
                                 alpha=self.alpha, seed=seed)
        return bootstrap_result(res)

    def randomization_test(self, assignments: Any = "design", *, draws: int | None = None, seed: int = 0,
                           null: float = 0.0, max_assignments: int | None = None) -> InferenceResult:
        """Randomization test of a constant effect = null, |t| as statistic (|ATT| with one treated cluster)."""
        check_draws(draws)
        if not (isinstance(assignments, str) and assignments == "design"):
            return self._explicit_randomization(_explicit(assignments, self.cells.treat), null)
        res = _cc.randomization(self.cells, design_paths(self.cells), null=null,
                                max_assignments=200_000 if max_assignments is None else max_assignments,
                                draws=9_999 if draws is None else draws, seed=seed, alpha=self.alpha)
        return randomization_result(res, "t" if self.cells.treated_clusters.sum() > 1 else "estimate")

    def _explicit_randomization(self, treats: np.ndarray, null: float) -> InferenceResult:
        """p-value over explicit assignments by re-estimation (no interval)."""
        cells = self.cells.minus_effect(null)

        def stat(c: Any) -> float:
            r = clean_controls_cells(c)
            return abs(r.t_stat) if c.treated_clusters.sum() > 1 else abs(r.estimate)

        t_obs = stat(cells)
        t = np.array([stat(cells.with_treatment(tr)) for tr in treats])
        p = float(np.mean(t >= t_obs * (1 - 1e-10)))
        return InferenceResult("randomization_t", t_obs, p, float("nan"), float("nan"), len(t), True)


def clean_controls(panel: Panel, outcome: str, *, alpha: float = 0.05,
                   placebo_variance: bool | None = None) -> CleanControlsFit:
    r"""Clean-control DiD: each treated cluster's treated periods against never-treated clusters.

    .. math::

        \theta = \frac{\sum_{g \in \mathcal T} \sum_{t \in P_g} n_g \,\tau_{gt}}{\sum_{g \in \mathcal T} n_g |P_g|}

    Needs the aggregated design (balanced panel, units nested in clusters,
    treatment constant within cluster x period); see
    :mod:`pipeline.did.clean_controls` for the estimator and its variance.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"i": [1, 1, 1, 2, 2, 2, 3, 3, 3], "t": [0, 1, 2] * 3, "d": [0, 1, 1] + [0] * 6,
    ...                    "y": [1.0, 3.0, 4.0, 1.0, 1.5, 2.0, 0.0, 0.5, 1.0]})
    >>> round(clean_controls(Panel(df, unit="i", time="t", treatment="d"), "y").result.estimate, 6)
    1.75
    """
    p = check_panel(panel, "clean_controls")
    d = p.require_treatment("clean_controls")
    df = prepare(p.frame, [p.unit, p.time, outcome, d, p.cluster])
    try:
        cells = aggregate(df, unit=p.unit, time=p.time, outcome=outcome, cluster=p.cluster, constant=[d]).cells
    except NotAggregable as exc:
        raise ValueError(f"clean_controls: needs the aggregated design: {exc}") from None
    return CleanControlsFit(p, outcome, clean_controls_cells(cells, alpha=alpha, placebo_variance=placebo_variance),
                            cells, alpha)


# ---------------------------------------------------------- synthetic DiD
class SyntheticDidFit(Fit):
    """Synthetic DiD (Arkhangelsky et al. 2021): the estimate, its placebo standard error and the weights."""

    estimator = "synthetic_did"
    inference = ("randomization_test",)

    def __init__(self, panel: Panel, outcome: str, result: Any, Y: np.ndarray, alpha: float) -> None:
        super().__init__(outcome=outcome, result=result, path="general", fallback_reason=None, alpha=alpha)
        self.panel, self._Y = panel, Y

    def _rows(self) -> list[dict[str, Any]]:
        r = self.result
        return [{"term": "att", "estimate": r.estimate, "std_error": r.std_error, "statistic": r.t_stat,
                 "df": None, "p_value": r.p_value, "ci_low": r.ci_low, "ci_high": r.ci_high,
                 "n_obs": r.n_units * r.n_periods, "n_units": r.n_units, "n_clusters": r.n_units,
                 "n_treated_clusters": r.n_treated_units, "path": "general"}]

    def randomization_test(self, assignments: Any = "design", *, draws: int | None = None, seed: int = 0,
                           null: float = 0.0, max_assignments: int | None = None) -> InferenceResult:
        """Randomization test of a constant effect = null: the treated block given to other units, |estimate|."""
        check_draws(draws)
        if not (isinstance(assignments, str) and assignments == "design"):
            raise ValueError("synthetic_did.randomization_test: assignments must be 'design' (the treated block)")
        r = self.result
        res = sdid_randomization(self._Y, n_treated=r.n_treated_units, n_post=r.n_post_periods, null=null,
                                 max_assignments=20_000 if max_assignments is None else max_assignments,
                                 draws=999 if draws is None else draws, seed=seed, alpha=self.alpha)
        return randomization_result(res, "estimate")


def synthetic_did(panel: Panel, outcome: str, *, replications: int = 200, seed: int = 0,
                  alpha: float = 0.05) -> SyntheticDidFit:
    r"""Synthetic difference in differences for a block design (one adoption period, treated to the end).

    .. math::

        \hat\tau = \Big(\bar Y_{tr,post} - \sum_t \hat\lambda_t Y_{tr,t}\Big)
                 - \sum_j \hat\omega_j\Big(\bar Y_{j,post} - \sum_t \hat\lambda_t Y_{j,t}\Big)

    Units are the panel's units (the cluster is not used); see
    :mod:`pipeline.did.sdid`. ``replications`` placebo re-assignments (seeded)
    give the standard error.
    """
    p = check_panel(panel, "synthetic_did")
    d = p.require_treatment("synthetic_did")
    Y, n_treated, n_post, controls, pre = block_matrix(p.frame, unit=p.unit, time=p.time, outcome=outcome,
                                                       treatment=d)
    res = sdid_matrix(Y, n_treated=n_treated, n_post=n_post, replications=replications, seed=seed, alpha=alpha,
                      control_units=controls, pre_periods=pre)
    return SyntheticDidFit(p, outcome, res, Y, alpha)


