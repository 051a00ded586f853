r"""Sup-t bands for an event study from the wild cluster bootstrap (unrestricted), from cluster x period sums or rows.

For the event study :math:`y_{it} = a_i + g_t + \tilde x_{gt}'\beta + e_{it}` fitted from
the sums (:func:`~pipeline.did.twfe.fit_cells`), the bootstrap outcome is
:math:`y^* = \hat y + w_g \hat u`. The unit means of :math:`\hat u` are zero and the
period effects absorb :math:`m_t(w) = \sum_h w_h \hat U_{ht}/N` (:math:`\hat U` the
clusters' residual sums), so with :math:`s_g` the fit's cluster scores and
:math:`A_g = n_g\sum_t \tilde x_{gt}\tilde x_{gt}'`,

.. math::

    \beta^* - \hat\beta = A^{-1}\sum_g w_g s_g,\qquad
    s^*_g = w_g s_g - \sum_h w_h C_{gh} - A_g(\beta^* - \hat\beta),\qquad
    C_{gh} = \frac{n_g}{N}\sum_t \tilde x_{gt}\hat U_{ht}

and :math:`t^*_k = (\beta^*_k - \hat\beta_k)/\mathrm{se}^*_k` with the CRV1 variance of
the draw. The band is :math:`\hat\beta_k \pm q\,\mathrm{se}_k` with :math:`q` the
:math:`1-\alpha` quantile of :math:`\max_k |t^*_k|` (simultaneous coverage over the
event times); the joint test of no effect at any event time compares
:math:`\max_k |\hat\beta_k/\mathrm{se}_k|` with the same maxima.

On any other panel (the general path) the same draws come from the demeaned
rows: with :math:`M` the fixed effects' residual maker,
:math:`s^*_g = \sum_h w_h \tilde X_g'[M(\hat u\,1_h)]_g - A_g(\beta^* - \hat\beta)`
(:func:`sup_t_bands_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from pipeline.did.cells import Cells
from pipeline.did.event_study import event_dummies, event_levels
from pipeline.did.inference._twfe_algebra import demean_sums
from pipeline.did.inference.bootstrap import WEIGHT_TYPES, _weights, all_sign_vectors
from pipeline.did.inference.general import demean
from pipeline.did.twfe import demean_cells, fit_cells

_BLOCK = 1_024  # draws per block


@dataclass(frozen=True)
class SupTBands:
    """Simultaneous (sup-t) band of an event study and the joint test of no effect."""

    event_times: np.ndarray
    estimate: np.ndarray
    std_error: np.ndarray
    critical_value: float
    ci_low: np.ndarray
    ci_high: np.ndarray
    statistic: float
    p_value: float
    draws: int
    exact: bool


@dataclass(frozen=True)
class _Algebra:
    """What the draws need: estimates, raw CRV1 standard errors, cluster scores S (G, K), the coupling C
    (G, G, K) with s*_g = w_g S_g - sum_h w_h C_gh - A_g delta*, and the clusters' A_g (G, K, K)."""

    beta: np.ndarray
    se_raw: np.ndarray
    S: np.ndarray
    C: np.ndarray
    Ag: np.ndarray


def _cells_algebra(cells: Cells, event_time: np.ndarray, reference: int) -> tuple[np.ndarray, _Algebra]:
    E = np.asarray(event_time, dtype=float)
    levels = event_levels(E, reference)
    X = event_dummies(E, levels)
    n, sums = cells.n.astype(float), cells.sums.astype(float)
    fit = fit_cells(n, sums, X)
    Xt = demean_cells(n, X)  # (K, G, T)
    U = demean_sums(sums, n) - n[:, None] * np.einsum("k,kgt->gt", fit.beta, Xt)
    Ag = n[:, None, None] * np.einsum("kgt,lgt->gkl", Xt, Xt)
    C = (n / n.sum())[:, None, None] * np.einsum("kgt,ht->ghk", Xt, U)
    return levels, _Algebra(fit.beta, np.sqrt(np.diag(fit.vcov_raw)), fit.scores, C, Ag)


def _rows_algebra(y: np.ndarray, X: np.ndarray, factors: list[np.ndarray], g: np.ndarray) -> _Algebra:
    """The same from the rows of any panel: M the fixed effects' residual maker (:func:`general.demean`),
    K_gh = X~_g' [M(u 1_h)]_g, and C_gh = 1{g = h} S_g - K_gh."""
    G, N = int(g.max()) + 1, len(y)
    Xt = demean(np.asarray(X, dtype=float).reshape(N, -1), factors)
    yt = demean(np.asarray(y, dtype=float), factors)
    beta = np.linalg.lstsq(Xt, yt, rcond=None)[0]
    u = yt - Xt @ beta
    ind = sparse.csr_matrix((np.ones(N), (np.arange(N), g)), shape=(N, G))
    S = np.asarray(ind.T @ (Xt * u[:, None]))
    Ag = np.zeros((G, Xt.shape[1], Xt.shape[1]))
    np.add.at(Ag, g, Xt[:, :, None] * Xt[:, None, :])
    Mu = demean(ind.multiply(u[:, None]).toarray(), factors)  # column h: M(u 1_h)
    K = np.stack([np.asarray(ind.T @ (Xt[:, [k]] * Mu)) for k in range(Xt.shape[1])], axis=2)
    C = -K
    C[np.arange(G), np.arange(G)] += S
    Ainv = np.linalg.inv(Ag.sum(axis=0))
    V = Ainv @ (S.T @ S) @ Ainv
    return _Algebra(beta, np.sqrt(np.diag(V)), S, C, Ag)


def _t_star(alg: _Algebra, W: np.ndarray) -> np.ndarray:
    """t* (draws, K) of the unrestricted bootstrap for the weights W (draws, G)."""
    Ainv = np.linalg.inv(alg.Ag.sum(axis=0))
    out = np.empty((len(W), len(alg.beta)))
    for start in range(0, len(W), _BLOCK):
        w = np.asarray(W[start:start + _BLOCK], dtype=float)
        delta = (w @ alg.S) @ Ainv.T
        s = w[:, :, None] * alg.S[None] - np.einsum("bh,ghk->bgk", w, alg.C) - np.einsum("gkl,bl->bgk", alg.Ag, delta)
        V = Ainv @ np.einsum("bgk,bgl->bkl", s, s) @ Ainv
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:start + len(w)] = delta / np.sqrt(np.einsum("bkk->bk", V))
    return out


def bootstrap_t(cells: Cells, event_time: np.ndarray, W: np.ndarray, *, reference: int = -1) -> tuple:
    """(levels, beta, se, t*) of the event study: t* (draws, K) for the weights W (draws, G), se without c."""
    levels, alg = _cells_algebra(cells, event_time, reference)
    return levels, alg.beta, alg.se_raw, _t_star(alg, W)


def _draw_weights(G: int, draws: int, weights: str, seed: int) -> tuple[np.ndarray, bool]:
    if weights not in WEIGHT_TYPES:
        raise ValueError(f"wild_bootstrap: weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    exact = weights == "rademacher" and 2**G <= draws
    return (all_sign_vectors(G) if exact else _weights(weights, G, int(draws), seed)), exact


def _bands(levels: np.ndarray, alg: _Algebra, W: np.ndarray, exact: bool, alpha: float, ssc: float) -> SupTBands:
    beta, se_raw = alg.beta, alg.se_raw
    sup = np.nanmax(np.abs(_t_star(alg, W)), axis=1)
    q_raw = float(np.quantile(sup, 1 - alpha))
    stat_raw = float(np.max(np.abs(beta / se_raw)))
    p = float(np.mean(sup >= stat_raw * (1 - 1e-10)))
    root = float(np.sqrt(ssc))  # t and q in units of the fit's standard errors; the band does not depend on c
    return SupTBands(np.asarray(levels), beta, root * se_raw, q_raw / root, beta - q_raw * se_raw,
                     beta + q_raw * se_raw, stat_raw / root, p, len(W), exact)


def sup_t_bands(cells: Cells, event_time: np.ndarray, *, reference: int = -1, draws: int = 9_999,
                weights: str = "webb", seed: int = 0, alpha: float = 0.05, ssc: float = 1.0) -> SupTBands:
    """Sup-t band over all event times and the sup-t test of no effect (see the module docstring).

    ``ssc`` is the small-sample factor of the fit's standard errors (the band
    scales with them; the bootstrap's own t* do not depend on it).
    """
    W, exact = _draw_weights(cells.n_clusters, draws, weights, seed)
    levels, alg = _cells_algebra(cells, event_time, reference)
    return _bands(levels, alg, W, exact, alpha, ssc)


def sup_t_bands_rows(y: np.ndarray, X: np.ndarray, levels: np.ndarray, factors: list[np.ndarray], g: np.ndarray, *,
                     draws: int = 9_999, weights: str = "webb", seed: int = 0, alpha: float = 0.05,
                     ssc: float = 1.0) -> SupTBands:
    """:func:`sup_t_bands` on the rows of any panel (the general path): X holds one dummy per event time."""
    W, exact = _draw_weights(int(g.max()) + 1, draws, weights, seed)
    return _bands(levels, _rows_algebra(y, X, factors, g), W, exact, alpha, ssc)
