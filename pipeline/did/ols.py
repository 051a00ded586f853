"""Dense OLS with CRV1 cluster-robust inference, for small unbalanced designs (e.g. AVAIN assessments).

Fixed effects enter as dummies, so this is for designs with few levels; the
small-sample factor is the package's one convention
(:func:`~pipeline.did.results.small_sample_factor`), with K counting every
column except dummies of levels nested in the clusters, and inference from t(G-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from pipeline.did.results import small_sample_factor


@dataclass(frozen=True)
class OlsResult:
    """The first coefficient of a dense OLS with CRV1 inference."""

    estimate: float
    std_error: float
    t_stat: float
    p_value: float
    ci_low: float
    ci_high: float
    n_obs: int
    n_clusters: int
    n_treated_clusters: int
    path: str = "general"
    std_error_cv3: float | None = None


def did_ols(y: np.ndarray, d: np.ndarray, unit: np.ndarray, time: np.ndarray, cluster: np.ndarray, *,
            alpha: float = 0.05) -> OlsResult:
    """y = a_unit + b_time + beta d + e by OLS with dummies; CRV1 by cluster; t(G-1)."""
    units, u_idx = np.unique(unit, return_inverse=True)
    times, t_idx = np.unique(time, return_inverse=True)
    clusters, g_idx = np.unique(cluster, return_inverse=True)
    N = len(y)
    X = np.zeros((N, 1 + len(units) + len(times) - 1))
    X[:, 0] = d
    X[np.arange(N), 1 + u_idx] = 1.0
    for k in range(1, len(times)):
        X[:, len(units) + k] = t_idx == k
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    bread = np.linalg.pinv(X.T @ X)
    G = len(clusters)
    scores = np.zeros((G, X.shape[1]))
    np.add.at(scores, g_idx, X * resid[:, None])
    nested = len(units) if _nested(u_idx, g_idx) else 0
    K = X.shape[1] - nested
    c = small_sample_factor(n_obs=N, n_params=K, n_clusters=G)
    V = c * bread @ (scores.T @ scores) @ bread
    se = float(np.sqrt(V[0, 0]))
    est = float(beta[0])
    t = est / se
    q = float(special.stdtrit(G - 1, 1 - alpha / 2))  # scipy.stats.t.ppf without its argument handling
    treated = len(np.unique(g_idx[d != 0]))
    return OlsResult(est, se, t, float(2 * special.stdtr(G - 1, -abs(t))), est - q * se, est + q * se, N, G, treated)


def _nested(u_idx: np.ndarray, g_idx: np.ndarray) -> bool:
    pairs = np.unique(np.stack([u_idx, g_idx], axis=1), axis=0)
    return len(pairs) == len(np.unique(u_idx))
