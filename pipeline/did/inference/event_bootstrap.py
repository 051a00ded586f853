r"""Sup-t bands for an event study from the wild cluster bootstrap (unrestricted), on cluster x period sums.

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.did.cells import Cells
from pipeline.did.event_study import event_dummies, event_levels
from pipeline.did.inference._twfe_algebra import demean_sums
from pipeline.did.inference.bootstrap import WEIGHT_TYPES, _weights, all_sign_vectors
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


def bootstrap_t(cells: Cells, event_time: np.ndarray, W: np.ndarray, *, reference: int = -1) -> tuple:
    """(beta, se, t*) of the event study: t* (draws, K) for the weights W (draws, G), se without the factor c."""
    E = np.asarray(event_time, dtype=float)
    levels = event_levels(E, reference)
    X = event_dummies(E, levels)
    n, sums = cells.n.astype(float), cells.sums.astype(float)
    fit = fit_cells(n, sums, X)
    Xt = demean_cells(n, X)  # (K, G, T)
    U = demean_sums(sums, n) - n[:, None] * np.einsum("k,kgt->gt", fit.beta, Xt)
    Ag = n[:, None, None] * np.einsum("kgt,lgt->gkl", Xt, Xt)
    Ainv = np.linalg.inv(Ag.sum(axis=0))
    C = (n / n.sum())[:, None, None] * np.einsum("kgt,ht->ghk", Xt, U)
    S = fit.scores  # (G, K)
    se = np.sqrt(np.diag(fit.vcov_raw))
    out = np.empty((len(W), len(levels)))
    for start in range(0, len(W), _BLOCK):
        w = np.asarray(W[start:start + _BLOCK], dtype=float)
        delta = (w @ S) @ Ainv.T
        s = w[:, :, None] * S[None] - np.einsum("bh,ghk->bgk", w, C) - np.einsum("gkl,bl->bgk", Ag, delta)
        V = Ainv @ np.einsum("bgk,bgl->bkl", s, s) @ Ainv
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:start + len(w)] = delta / np.sqrt(np.einsum("bkk->bk", V))
    return levels, fit.beta, se, out


def sup_t_bands(cells: Cells, event_time: np.ndarray, *, reference: int = -1, draws: int = 9_999,
                weights: str = "webb", seed: int = 0, alpha: float = 0.05, ssc: float = 1.0) -> SupTBands:
    """Sup-t band over all event times and the sup-t test of no effect (see the module docstring).

    ``ssc`` is the small-sample factor of the fit's standard errors (the band
    scales with them; the bootstrap's own t* do not depend on it).
    """
    if weights not in WEIGHT_TYPES:
        raise ValueError(f"wild_bootstrap: weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    G = cells.n_clusters
    exact = weights == "rademacher" and 2**G <= draws
    W = all_sign_vectors(G) if exact else _weights(weights, G, int(draws), seed)
    levels, beta, se_raw, t_star = bootstrap_t(cells, event_time, W, reference=reference)
    sup = np.nanmax(np.abs(t_star), axis=1)
    q_raw = float(np.quantile(sup, 1 - alpha))
    stat_raw = float(np.max(np.abs(beta / se_raw)))
    p = float(np.mean(sup >= stat_raw * (1 - 1e-10)))
    root = float(np.sqrt(ssc))  # t and q in units of the fit's standard errors; the band does not depend on c
    return SupTBands(levels, beta, root * se_raw, q_raw / root, beta - q_raw * se_raw, beta + q_raw * se_raw,
                     stat_raw / root, p, len(W), exact)
