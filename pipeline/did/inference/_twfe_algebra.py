"""TWFE coefficient and CRV1 statistic as exact functions of cluster x period sums.

Balanced panel, unit i nested in cluster g, observed every period t:

.. math::

    y_{it} = a_i + g_t + \\beta D_{gt} + e_{it}

The two-way within transformation is exact in one pass, so with person-weighted
demeaned treatment :math:`\\tilde d_{gt} = D_{gt} - \\bar D_{g\\cdot} - m_t + \\bar m`,
:math:`m_t = \\sum_g n_g D_{gt} / \\sum_g n_g`,

.. math::

    \\hat\\beta = \\frac{\\sum_{gt} \\tilde d_{gt} S_{gt}}{\\sum_{gt} n_g \\tilde d_{gt}^2},
    \\qquad s_g = \\sum_t \\tilde d_{gt} \\tilde Y_{gt} - \\hat\\beta n_g \\sum_t \\tilde d_{gt}^2,

with :math:`\\tilde Y_{gt} = S_{gt} - S_{g\\cdot}/T - n_g(\\bar y_{\\cdot t} - \\bar y_{\\cdot\\cdot})`
the cluster sum of the demeaned outcome.  CRV1 variance
:math:`c \\sum_g s_g^2 / (\\sum n_g \\tilde d^2)^2`, :math:`c = G/(G-1)\\,(N-1)/(N-K)`,
:math:`N = T \\sum n_g`, :math:`K = T` (the coefficient and T-1 period effects; the
person effects are nested in the clusters).  p-values from t(G-1).

Everything here is private to :mod:`pipeline.did.inference`; it does not depend on
the estimation package's own TWFE module on purpose (an independent path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import special

if TYPE_CHECKING:  # the estimation package is imported lazily: it may be mid-edit
    from pipeline.did.cells import Cells


def crv1_constant(n_clusters: int, n_periods: int, n_units: float) -> float:
    """Small-sample constant c = G/(G-1) * (N-1)/(N-K), N = T * units, K = T."""
    G, T = n_clusters, n_periods
    N = T * n_units
    K = T
    return G / (G - 1) * (N - 1) / (N - K)


def demean_treatment(treat: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Person-weighted two-way demeaned treatment d~ of shape (..., G, T).

    ``treat`` may carry leading batch dimensions (many assignments at once).
    """
    treat = np.asarray(treat, dtype=float)
    w = np.asarray(n, dtype=float) / np.sum(n)
    row = treat - treat.mean(axis=-1, keepdims=True)  # D - D_g.
    m = np.einsum("g,...gt->...t", w, row)  # m_t - m_bar
    return row - m[..., None, :]


def demean_sums(sums: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Cluster sums of the two-way demeaned outcome, Y~_gt (shape of ``sums``)."""
    sums = np.asarray(sums, dtype=float)
    n = np.asarray(n, dtype=float)
    ybar_t = sums.sum(axis=-2) / n.sum()  # (..., T)
    ybar = ybar_t.mean(axis=-1, keepdims=True)
    return sums - sums.mean(axis=-1, keepdims=True) - n[:, None] * (ybar_t - ybar)[..., None, :]


@dataclass(frozen=True)
class TwfeFit:
    """TWFE estimate with its CRV1 standard error, from cluster x period sums."""

    beta: float
    se: float
    t_stat: float
    p_value: float
    scores: np.ndarray
    n_clusters: int
    null: float

    @property
    def df(self) -> int:
        """Degrees of freedom of the reference t distribution, G - 1."""
        return self.n_clusters - 1


def twfe_fit(cells: Cells, *, null: float = 0.0) -> TwfeFit:
    """TWFE beta, CRV1 se, t = (beta - null)/se and its t(G-1) p-value."""
    n = np.asarray(cells.n, dtype=float)
    d = demean_treatment(cells.treat, n)
    Y = demean_sums(cells.sums, n)
    Q = n * np.sum(d * d, axis=1)
    den = Q.sum()
    if not den > 0:
        raise ValueError("twfe_fit: the demeaned treatment is identically zero (no variation)")
    P = np.sum(d * Y, axis=1)
    beta = P.sum() / den
    scores = P - beta * Q
    c = crv1_constant(cells.n_clusters, cells.n_periods, n.sum())
    se = float(np.sqrt(c * np.sum(scores**2)) / den)
    t = (beta - null) / se
    p = float(t_pvalue(t, cells.n_clusters - 1))
    return TwfeFit(float(beta), se, float(t), p, scores, cells.n_clusters, float(null))


def batch_beta_t(sums: np.ndarray, n: np.ndarray, treat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """beta and CRV1 t (against 0) for a batch of treatments ``treat`` (B, G, T).

    O(B G T); the slow-but-general path used by placebo jackknife and tests.
    """
    n = np.asarray(n, dtype=float)
    G, T = np.shape(sums)
    d = demean_treatment(treat, n)
    Y = demean_sums(sums, n)
    Q = n * np.sum(d * d, axis=-1)
    den = Q.sum(axis=-1)
    P = np.sum(d * Y, axis=-1)
    beta = P.sum(axis=-1) / den
    s = P - beta[..., None] * Q
    c = crv1_constant(G, T, n.sum())
    se = np.sqrt(c * np.sum(s * s, axis=-1)) / den
    return beta, beta / se


def t_pvalue(t: np.ndarray | float, df: int) -> np.ndarray:
    """Two-sided p-value of t against t(df): ``2 * scipy.stats.t.sf(|t|, df)``, by the function behind it."""
    return 2 * special.stdtr(df, -np.abs(t))
