"""Two-way fixed-effects difference-in-differences: the aggregated algebra and ``twfe``.

The private helpers here solve the unit + time fixed-effects regression with any
number of regressors that are constant within cluster x period, from the
cluster x period sums alone; :mod:`pipeline.did.event_study` reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

import polars as pl

from pipeline.did.cells import Cells
from pipeline.did.panel import Aggregated, check_path, choose_path, fit_general, prepare
from pipeline.did.results import (
    TwfeResult,
    count_params,
    jackknife_se,
    small_sample_factor,
    t_inference,
)

if TYPE_CHECKING:
    from pipeline.did.panel import Frame
    from pipeline.did.results import PathOption


@dataclass(frozen=True)
class CellFit:
    """Coefficients, unscaled CRV1 sandwich and sample sizes of an aggregated fit."""

    beta: np.ndarray
    vcov_raw: np.ndarray
    scores: np.ndarray
    n_obs: int
    n_units: int
    n_periods: int
    n_clusters: int


def demean_cells(n: np.ndarray, X: np.ndarray) -> np.ndarray:
    r"""Two-way (unit and period) within transformation of cluster x period regressors.

    .. math::

        \tilde x_{gt} = x_{gt} - \bar x_{g\cdot} - m_t + \bar m,\qquad
        m_t = \frac{\sum_g n_g x_{gt}}{\sum_g n_g}

    Exact in one pass for a balanced panel whose units are nested in the clusters.
    ``X`` is (K, G, T); the result has the same shape and sums to zero over t
    within every cluster and (person-weighted) over g within every period.
    """
    w = n / n.sum()
    m = np.einsum("g,kgt->kt", w, X)[:, None, :]
    return X - X.mean(axis=2, keepdims=True) - m + m.mean(axis=2, keepdims=True)


_PRODUCT_MACS = 1 << 18
"""Multiply-adds per matrix product of :func:`_solve` with ``blocked=True``: OpenBLAS computes a
product this small on the calling thread, where waking its other threads would cost more."""


def _solve(n: np.ndarray, sums: np.ndarray, X: np.ndarray, *,
           blocked: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (beta, demeaned X, X'X) of the aggregated regression; raise if X'X is singular.

    ``blocked=True`` forms X'X by matrix products over blocks of cells, ten times
    faster than the one contraction of the fit itself for an event study's many
    regressors, with sums in another order (the leave-one-out fits use it).
    """
    Xt = demean_cells(n, X)
    if blocked:
        K = Xt.shape[0]
        Z = Xt.reshape(K, -1)
        Zn = (Xt * n[:, None]).reshape(K, -1)
        step = max(1, _PRODUCT_MACS // (K * K))
        A = np.zeros((K, K))
        for j in range(0, Z.shape[1], step):
            A += Zn[:, j : j + step] @ Z[:, j : j + step].T
        b = Z @ np.asarray(sums, dtype=float).reshape(-1)
    else:
        A = np.einsum("g,kgt,lgt->kl", n, Xt, Xt)
        b = np.einsum("kgt,gt->k", Xt, sums)
    K = A.shape[0]
    if np.linalg.matrix_rank(A) < K:
        raise ValueError(
            f"regressors are collinear with the unit and period effects: rank {np.linalg.matrix_rank(A)} < {K}"
        )
    return np.linalg.solve(A, b), Xt, A


def fit_cells(n: np.ndarray, sums: np.ndarray, X: np.ndarray) -> CellFit:
    r"""Fit :math:`y_{it} = a_i + g_t + x_{gt}'\beta + e_{it}` from the sums.

    .. math::

        \hat\beta = \Big(\sum_g n_g \tilde X_g'\tilde X_g\Big)^{-1}\sum_g \tilde X_g' S_g,\qquad
        s_g = \sum_t \tilde x_{gt}\,\big(S_{gt} - n_g\bar y_{\cdot t} - n_g \tilde x_{gt}'\hat\beta\big)

    The unit means of the outcome drop out of the scores because
    :math:`\sum_t \tilde x_{gt} = 0`. ``vcov_raw`` is
    :math:`A^{-1}(\sum_g s_g s_g')A^{-1}` before the small-sample factor.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 2:
        X = X[None]
    beta, Xt, A = _solve(n, sums, X)
    ybar_t = sums.sum(axis=0) / n.sum()
    resid = sums - n[:, None] * (ybar_t[None, :] + np.einsum("k,kgt->gt", beta, Xt))
    scores = np.einsum("kgt,gt->gk", Xt, resid)
    Ainv = np.linalg.inv(A)
    V = Ainv @ (scores.T @ scores) @ Ainv
    G, T = sums.shape
    return CellFit(beta, (V + V.T) / 2, scores, int(n.sum()) * T, int(n.sum()), T, G)


def leave_one_cluster_out(n: np.ndarray, sums: np.ndarray, X: np.ndarray) -> np.ndarray:
    """(G, K) coefficients re-estimated without each cluster in turn; NaN where not identified."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 2:
        X = X[None]
    G = sums.shape[0]
    out = np.full((G, X.shape[0]), np.nan)
    keep = np.ones(G, dtype=bool)
    many = X.shape[0] > 1  # one regressor: the contraction is as fast, and keeps the fit's order of sums
    for g in range(G):
        keep[g] = False
        cols = np.flatnonzero(np.any(X[:, keep] != 0, axis=(1, 2)))
        try:
            out[g, cols] = _solve(n[keep], sums[keep], X[cols][:, keep], blocked=many)[0]
        except (ValueError, np.linalg.LinAlgError):
            pass
        keep[g] = True
    return out


def twfe_cells(cells: Cells, alpha: float = 0.05, *, cv3: bool = True) -> TwfeResult:
    r"""TWFE DiD from cluster x period sums (the aggregated path).

    .. math::

        y_{it} = a_i + g_t + \beta D_{g(i)t} + e_{it}

    CRV1 standard error with the small-sample factor of
    :func:`~pipeline.did.results.small_sample_factor` (K = 1 + T), t(G-1)
    p-value and interval; cluster-jackknife (CV3J) standard error unless ``cv3=False``.

    Examples
    --------
    >>> import numpy as np
    >>> from pipeline.did.cells import Cells
    >>> rng = np.random.default_rng(0)
    >>> n = np.array([3, 4, 5, 6]); D = np.zeros((4, 5)); D[:2, 3:] = 1
    >>> sums = n[:, None] * (rng.normal(size=(4, 5)) + 2.0 * D)
    >>> r = twfe_cells(Cells(np.arange(4), np.arange(5), n, sums, D))
    >>> r.path
    'aggregated'
    """
    n, sums, X = cells.n.astype(float), cells.sums.astype(float), cells.treat.astype(float)[None]
    fit = fit_cells(n, sums, X)
    jack = leave_one_cluster_out(n, sums, X)[:, 0] if cv3 else np.full(fit.n_clusters, np.nan)
    K = count_params(n_regressors=1, n_units=fit.n_units, n_periods=fit.n_periods, units_nested=True)
    return make_twfe_result(
        beta=float(fit.beta[0]),
        vcov_raw=float(fit.vcov_raw[0, 0]),
        jack=jack,
        n_obs=fit.n_obs,
        n_params=K,
        n_units=fit.n_units,
        n_clusters=fit.n_clusters,
        n_treated_clusters=int(cells.treated_clusters.sum()),
        path="aggregated",
        alpha=alpha,
    )


def make_twfe_result(
    *,
    beta: float,
    vcov_raw: float,
    jack: np.ndarray,
    n_obs: int,
    n_params: int,
    n_units: int,
    n_clusters: int,
    n_treated_clusters: int,
    path: str,
    alpha: float,
    fallback_reason: str | None = None,
) -> TwfeResult:
    """Apply the small-sample convention and t(G-1) inference; both paths end here."""
    c = small_sample_factor(n_obs=n_obs, n_params=n_params, n_clusters=n_clusters)
    se = float(np.sqrt(c * vcov_raw))
    inf = t_inference(beta, se, n_clusters - 1, alpha)
    se3 = float(jackknife_se(np.asarray(jack, dtype=float)[:, None])[0])
    inf3 = t_inference(beta, se3, n_clusters - 1, alpha)
    return TwfeResult(
        estimate=beta,
        std_error=se,
        t_stat=inf.t_stat,
        p_value=inf.p_value,
        ci_low=inf.ci_low,
        ci_high=inf.ci_high,
        std_error_cv3=se3,
        p_value_cv3=inf3.p_value,
        n_obs=n_obs,
        n_units=n_units,
        n_clusters=n_clusters,
        n_treated_clusters=n_treated_clusters,
        path=path,  # type: ignore[arg-type]
        fallback_reason=fallback_reason,
        alpha=alpha,
        ssc=c,
    )


def twfe(
    panel: Frame,
    *,
    unit: str,
    time: str,
    outcome: str,
    treatment: str,
    cluster: str,
    path: PathOption = "auto",
    alpha: float = 0.05,
    cv3: bool = True,
) -> TwfeResult:
    r"""Two-way fixed-effects DiD on a long panel, clustered by ``cluster``.

    .. math::

        y_{it} = a_i + g_t + \beta D_{it} + e_{it}

    ``path="auto"`` reduces the panel to cluster x period sums when it is
    balanced, its units are nested in the clusters and treatment is constant
    within cluster x period, and otherwise falls back to linearmodels
    (``PanelOLS`` with entity and time effects), recording the reason.
    ``"aggregated"`` raises ``ValueError`` if the panel does not qualify;
    ``"general"`` always uses linearmodels. Both apply the same small-sample
    factor and t(G-1) inference.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"i": [1, 1, 2, 2, 3, 3, 4, 4], "t": [0, 1] * 4,
    ...                    "g": [1, 1, 1, 1, 2, 2, 3, 3], "d": [0, 1, 0, 1, 0, 0, 0, 0],
    ...                    "y": [1.0, 3.0, 2.0, 3.5, 1.0, 1.5, 0.5, 1.5]})
    >>> round(twfe(df, unit="i", time="t", outcome="y", treatment="d", cluster="g").estimate, 6)
    1.0
    """
    return _run_twfe(
        panel, unit=unit, time=time, outcome=outcome, treatment=treatment,
        cluster=cluster, path=path, alpha=alpha, cv3=cv3,
    )


def _run_twfe(
    panel: Frame,
    *,
    unit: str,
    time: str,
    outcome: str,
    treatment: str,
    cluster: str,
    path: PathOption,
    alpha: float,
    cv3: bool,
) -> TwfeResult:
    """Dispatch of :func:`~pipeline.did.twfe.twfe` between the aggregated and the general path."""
    df = prepare(panel, [unit, time, outcome, treatment, cluster])
    return fit_twfe(df, unit=unit, time=time, outcome=outcome, treatment=treatment, cluster=cluster, path=path,
                    alpha=alpha, cv3=cv3)[0]


def fit_twfe(
    df: pl.DataFrame, *, unit: str, time: str, outcome: str, treatment: str, cluster: str, path: PathOption,
    alpha: float, cv3: bool,
) -> tuple[TwfeResult, Aggregated | None]:
    """TWFE on a prepared frame, with the aggregated inputs when that path ran (for the inference)."""
    check_path(path)
    agg, reason = choose_path(df, unit=unit, time=time, outcome=outcome, cluster=cluster, constant=[treatment],
                              path=path)
    if agg is not None:
        return twfe_cells(agg.cells, alpha, cv3=cv3), agg
    fit = fit_general(df, df[treatment].to_numpy(), unit=unit, time=time, outcome=outcome, cluster=cluster, cv3=cv3)
    return make_twfe_result(
        beta=float(fit.beta[0]),
        vcov_raw=float(fit.vcov_raw[0, 0]),
        jack=fit.jack[:, 0],
        n_obs=fit.n_obs,
        n_params=fit.n_params,
        n_units=fit.n_units,
        n_clusters=fit.n_clusters,
        n_treated_clusters=df.filter(pl.col(treatment) != 0)[cluster].n_unique(),
        path="general",
        alpha=alpha,
        fallback_reason=reason,
    ), None
