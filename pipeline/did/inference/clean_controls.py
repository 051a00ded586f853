r"""Wild cluster bootstrap and randomization inference for the clean-control estimator.

The clean-control estimate is linear in the cluster x period sums,
:math:`\hat\theta = \sum_g a_g`, :math:`a_g = L_g \cdot S_g` with weights :math:`L` that
depend on the treatment and the unit counts only (:func:`contribution_weights`),
and its variance is a quadratic form in the :math:`a_g`. Both procedures use that.

*Wild bootstrap.* The DGP is the two-way model with a constant effect
:math:`b_0` imposed (restricted, WCR: :math:`b_0` = the null; unrestricted, WCU:
:math:`b_0 = \hat\theta`): cluster sums of its residuals
:math:`U = \tilde Y - b_0 n\tilde d` (the demeaned sums of the TWFE algebra) and
:math:`S^* = S - U + w_g U`. The estimator removes unit and period effects and
returns :math:`b_0` on the fitted part, so :math:`a^* = a(S) - a(U) + w \circ a(U)`
per draw, and :math:`t^* = (\hat\theta^* - b_0)/\mathrm{se}^*` with the estimator's own
variance. The WCR interval inverts the test with the same draws; the WCU one
is percentile-t.

*Randomization.* The design's paths are reassigned to distinct clusters (as for
TWFE); per assignment the estimate and its variance at a constant effect
:math:`\beta_0` (sums :math:`S - \beta_0 n D_{obs}`) are affine and quadratic in
:math:`\beta_0`, so five numbers per assignment give the p-value and the inverted
interval. The statistic is :math:`|t|`; with a single treated cluster (placebo
variance) it is :math:`|\hat\theta|`.
"""

from __future__ import annotations

import numpy as np

from pipeline.did.cells import Cells
from pipeline.did.clean_controls import contribution_weights
from pipeline.did.inference._twfe_algebra import TwfeFit, demean_sums, demean_treatment
from pipeline.did.inference.bootstrap import WEIGHT_TYPES, BootstrapResult, _result, _weights, all_sign_vectors
from pipeline.did.inference.randomization import (
    _RTOL,
    RandomizationResult,
    _ExtremeCounter,
    _invert,
    _t_at,
    enumerate_assignments,
    make_design,
    observed_assignment,
    sample_assignments,
)

_CHUNK = 20_000  # assignments per batch (the seeded stream does not depend on it)


def _variance(a: np.ndarray, weight: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """The estimator's variance G/(G-1) (|dev_T|^2 + |dev_C|^2) for each row of a (B, G)."""
    G = a.shape[-1]
    out = np.zeros(a.shape[:-1])
    for part in (treated, ~treated):
        sub = a[..., part]
        dev = sub - weight[part] * sub.sum(axis=-1, keepdims=True)
        out += np.einsum("...g,...g->...", dev, dev)
    return G / (G - 1) * out


def _draw_coefficients(W: np.ndarray, aS: np.ndarray, aY: np.ndarray, aZ: np.ndarray, weight: np.ndarray,
                       treated: np.ndarray) -> np.ndarray:
    r"""Per draw (rows of W) the five numbers that give t* at every b0: [n0, n1, s00, s01, s11].

    With the DGP's b0, :math:`a^* = P + b_0 Q` with :math:`P = p_0 + w \circ p_1`,
    :math:`p_0 = a(S) - a(Y)`, :math:`p_1 = a(Y)`, and :math:`Q = q_0 + w \circ q_1`,
    :math:`q_0 = a(Z) = -q_1`, so :math:`\theta^* - b_0 = n_0 + b_0 n_1` and the
    variance is :math:`s_{00} + 2 b_0 s_{01} + b_0^2 s_{11}`. Within each part
    (treated, controls) the deviations are :math:`P - \omega \sum P`, whose cross
    products expand into sums over clusters that are linear in w or in
    :math:`w^2`: all of them come from two matrix products with W and W*W.
    """
    k = W.shape[1] / (W.shape[1] - 1)
    p0, p1, q0, q1 = aS - aY, aY, aZ, -aZ
    W2 = W * W
    out = np.zeros((5, W.shape[0]))
    for part in (treated, ~treated):
        m = part.astype(float)
        w = weight * m
        lin = np.column_stack([p1 * m, q1 * m, (p0 * q1 + p1 * q0) * m, w * p1, w * q1, 2 * p0 * p1 * m,
                               2 * q0 * q1 * m])
        sq = np.column_stack([p1 * q1 * m, p1 * p1 * m, q1 * q1 * m])
        L, Q2 = W @ lin, W2 @ sq
        sum_p = p0 @ m + L[:, 0]
        sum_q = q0 @ m + L[:, 1]
        pq = (p0 * q0) @ m + L[:, 2] + Q2[:, 0]
        pp = (p0 * p0) @ m + L[:, 5] + Q2[:, 1]
        qq = (q0 * q0) @ m + L[:, 6] + Q2[:, 2]
        wp = w @ p0 + L[:, 3]
        wq = w @ q0 + L[:, 4]
        ww = float(w @ w)
        out[0] += sum_p
        out[1] += sum_q
        out[2] += pp - 2 * sum_p * wp + sum_p * sum_p * ww
        out[3] += pq - sum_q * wp - sum_p * wq + sum_p * sum_q * ww
        out[4] += qq - 2 * sum_q * wq + sum_q * sum_q * ww
    out[1] -= 1.0
    out[2:] *= k
    return out


def wild_bootstrap(cells: Cells, *, null: float = 0.0, draws: int = 9_999, weights: str = "webb",
                   restricted: bool = True, alpha: float = 0.05, seed: int = 0, ci: bool = True) -> BootstrapResult:
    """Wild cluster bootstrap-t of H0: ATT = null for the clean-control estimator (see the module docstring)."""
    (res,) = wild_bootstraps(cells, null=null, draws=draws, weights=weights, restricted=(restricted,), alpha=alpha,
                             seed=seed, ci=ci)
    return res


def wild_bootstraps(cells: Cells, *, null: float = 0.0, draws: int = 9_999, weights: str = "webb",
                    restricted: tuple[bool, ...] = (True, False), alpha: float = 0.05, seed: int = 0,
                    ci: bool = True) -> tuple[BootstrapResult, ...]:
    """:func:`wild_bootstrap` for each of ``restricted`` (WCR, WCU) from one set of draws and coefficients."""
    if weights not in WEIGHT_TYPES:
        raise ValueError(f"wild_bootstrap: weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    L, weight, treated = contribution_weights(cells)
    if treated.sum() < 2:
        raise ValueError("wild_bootstrap: the clean-control variance needs at least two treated clusters")
    G = cells.n_clusters
    n = cells.n.astype(float)
    aS = np.sum(L * cells.sums, axis=1)
    aY = np.sum(L * demean_sums(cells.sums, n), axis=1)
    aZ = np.sum(L * (n[:, None] * demean_treatment(cells.treat, n)), axis=1)
    theta = float(aS.sum())
    se = float(np.sqrt(_variance(aS, weight, treated)))
    exact = weights == "rademacher" and 2**G <= draws
    W = all_sign_vectors(G) if exact else _weights(weights, G, int(draws), seed)
    n0, n1, s00, s01, s11 = _draw_coefficients(W, aS, aY, aZ, weight, treated)
    # the TWFE bootstrap's per-draw form t* = (wP - b0 wQ) / sqrt(c (saa + 2 b0 sab + b0^2 sbb)) with c = 1:
    # its p-values, its WCR interval search (with the settling of decided draws) and its percentile-t interval
    coef = np.stack([n0, -n1, s00, s01, s11])
    fit = TwfeFit(theta, se, theta / se, float("nan"), np.zeros(G), G, 0.0)
    return tuple(_result(coef, 1.0, fit, null=null, weights=weights, restricted=r, alpha=alpha, ci=ci, exact=exact)
                 for r in restricted)


def _coefficients(cells: Cells, design, idx: np.ndarray, Z: np.ndarray, one_treated: bool) -> np.ndarray:
    """[numY, numZ, sYY, sYZ, sZZ] of assignments idx (B, M) at sums S - beta0 Z."""
    G, T = cells.sums.shape
    n = cells.n.astype(float)
    slot = design.slot_path
    K = len(design.counts)
    paths = design.paths != 0
    firsts = np.argmax(paths, axis=1)
    if np.any(firsts == 0):
        raise ValueError("randomization: a path is treated from the first period: no pre-period")
    pre = np.arange(T)[None, :] < firsts[:, None]
    lam = paths.astype(float) - paths.sum(axis=1, keepdims=True) * pre / pre.sum(axis=1, keepdims=True)  # (K, T)
    Psum = paths.sum(axis=1).astype(float)
    LS, LZ = lam @ cells.sums.T, lam @ Z.T  # (K, G): lam_k . S_g
    B = len(idx)
    n_slot = n[idx]  # (B, M)
    W = n_slot @ Psum[slot]
    onehot = (slot[:, None] == np.arange(K)[None, :]).astype(float)
    Nk = n_slot @ onehot  # (B, K)
    N_c = n.sum() - n_slot.sum(axis=1)
    rows = np.arange(B)[:, None]
    out = np.empty((5, B))
    a_parts = []
    for LX in (LS, LZ):
        a = -(Nk @ LX) / (N_c * W)[:, None]  # controls
        a[rows, idx] = LX[slot[None, :], idx] / W[:, None]
        a_parts.append(a)
    treated = np.zeros((B, G), dtype=bool)
    treated[rows, idx] = True
    weight = np.broadcast_to(n / N_c[:, None], (B, G)).copy()
    weight[rows, idx] = n_slot * Psum[slot][None, :] / W[:, None]
    out[0], out[1] = a_parts[0].sum(axis=1), a_parts[1].sum(axis=1)
    if one_treated:
        out[2], out[3], out[4] = 1.0, 0.0, 0.0
        return out
    devs = []
    for a in a_parts:
        theta_t = np.where(treated, a, 0.0).sum(axis=1, keepdims=True)
        theta_c = a.sum(axis=1, keepdims=True) - theta_t
        devs.append(a - weight * np.where(treated, theta_t, theta_c))
    k = G / (G - 1)
    out[2] = k * np.einsum("bg,bg->b", devs[0], devs[0])
    out[3] = k * np.einsum("bg,bg->b", devs[0], devs[1])
    out[4] = k * np.einsum("bg,bg->b", devs[1], devs[1])
    return out


def randomization(cells: Cells, paths, *, null: float = 0.0, max_assignments: int = 200_000, draws: int = 9_999,
                  seed: int = 0, alpha: float = 0.05, ci: bool = True) -> RandomizationResult:
    """Randomization test of H0: constant effect = null for the clean-control estimator, and its interval."""
    design = make_design(paths, cells.n_periods)
    G = cells.n_clusters
    one = int(design.counts.sum()) < 2
    n = cells.n.astype(float)
    Z = n[:, None] * cells.treat.astype(float)
    obs = _coefficients(cells, design, observed_assignment(cells.treat, design)[None, :], Z, one)
    total = design.n_assignments(G)
    exact = total <= max_assignments
    chunks = (enumerate_assignments(G, design, chunk=_CHUNK) if exact
              else sample_assignments(G, design, int(draws), seed, chunk=_CHUNK))
    coef = np.concatenate([_coefficients(cells, design, idx, Z, one) for idx in chunks], axis=1)

    def p_at(beta0: float, counter: _ExtremeCounter | None = None) -> float:
        t0 = abs(_t_at(obs, beta0, 1.0)[0]) * (1 - _RTOL)
        k = counter.count(beta0, t0) if counter is not None else int(np.sum(np.abs(_t_at(coef, beta0, 1.0)) >= t0))
        return k / coef.shape[1] if exact else (1 + k) / (coef.shape[1] + 1)

    p = p_at(null)
    lo = hi = np.nan
    if ci:
        counter = _ExtremeCounter(coef, 1.0)
        theta = float(obs[0, 0])
        scale = float(np.sqrt(obs[2, 0])) if not one else max(abs(theta), 1e-12)
        lo, hi = _invert(lambda b: p_at(b, counter), theta, scale, alpha, rtol=1e-4)
    n_assign = coef.shape[1] if exact else coef.shape[1] + 1
    return RandomizationResult(float(p), float(_t_at(obs, null, 1.0)[0]), int(n_assign), bool(exact),
                               float(lo), float(hi))
