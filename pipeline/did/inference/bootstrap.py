"""Wild cluster bootstrap (restricted WCR and unrestricted WCU) from cluster x period sums.

The bootstrap outcome is :math:`y^* = \\hat y + w_g \\hat u` with residuals from the
model with :math:`\\beta = b_0` imposed (WCR: :math:`b_0` = the null; WCU:
:math:`b_0 = \\hat\\beta`).  Re-estimating the two-way model on :math:`y^*`:

.. math::

    \\beta^* - b_0 = \\frac{\\sum_g w_g B_g}{\\sum_g Q_g}, \\qquad
    s^*_g = w_g B_g - \\sum_h C_{gh} w_h - (\\beta^* - b_0) Q_g,

with :math:`Q_g = n_g \\sum_t \\tilde d_{gt}^2`, :math:`B_g = \\sum_t \\tilde d_{gt} U_{gt}`,
:math:`U = \\tilde Y - b_0 n \\tilde d` and :math:`C_{gh} = (n_g / \\sum n) \\sum_t \\tilde d_{gt} U_{ht}`.
The :math:`C` term is the re-demeaning of :math:`w_g \\hat u` over periods (the period
effects absorb :math:`\\sum_h w_h U_{ht}`); it sums to zero over clusters, so it leaves
:math:`\\beta^*` alone but not the cluster scores.  Each draw therefore costs one
(G x G) matrix-vector product after an O(G^2 T) precomputation, done for a chunk of
draws as one matrix product.  Because every quantity is affine in :math:`b_0`,
per draw five numbers (:math:`w\\cdot P`, :math:`w\\cdot Q` and the three coefficients of
:math:`\\sum_g s^{*2}_g` as a quadratic in :math:`b_0`) give the bootstrap statistic
for every null at once; the WCR interval is inverted with the same draws.

Example
-------
>>> res = wild_cluster_bootstrap(cells, draws=9_999, weights="webb")  # doctest: +SKIP
>>> res.p_value, res.ci_low, res.ci_high  # doctest: +SKIP
>>> wcr, wcu = wild_cluster_bootstraps(cells, draws=9_999, restricted=(True, False))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import numpy as np

from pipeline.did.inference._twfe_algebra import TwfeFit, crv1_constant, demean_sums, demean_treatment, twfe_fit

if TYPE_CHECKING:  # the estimation package is imported lazily: it may be mid-edit
    from pipeline.did.cells import Cells

WeightType = Literal["webb", "rademacher"]
WEIGHT_TYPES: tuple[str, ...] = ("webb", "rademacher")

_WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
_CHUNK = 32_768  # rows per draw of weights: part of the seeded stream, fixed
_RTOL = 1e-10  # |t*| >= |t| up to rounding: ties (e.g. w = 1 under WCR) count as extreme
_PRODUCT_MACS = 1 << 18
"""Multiply-adds per matrix product in :func:`_draw_coefficients`. OpenBLAS computes a product
this small on the calling thread; a larger one wakes its other threads, which costs far more
than the product itself when the cores are busy (12 ms instead of 0.2 ms for 999 draws)."""


@dataclass(frozen=True)
class BootstrapResult:
    """Wild cluster bootstrap p-value and confidence interval."""

    p_value: float
    ci_low: float
    ci_high: float
    t_stat: float
    draws: int
    weights: str
    restricted: bool
    exact_enumeration: bool


@dataclass(frozen=True)
class _Pre:
    """O(G^2 T) precomputation shared by all draws."""

    P: np.ndarray  # (G,) sum_t d~ Y~
    Q: np.ndarray  # (G,) n_g sum_t d~^2
    Cy: np.ndarray  # (G, G) (n_g/N) sum_t d~_gt Y~_ht
    Cd: np.ndarray  # (G, G) (n_g/N) n_h sum_t d~_gt d~_ht
    c: float  # CRV1 constant


def _precompute(cells: Cells) -> _Pre:
    n = np.asarray(cells.n, dtype=float)
    d = demean_treatment(cells.treat, n)
    Y = demean_sums(cells.sums, n)
    frac = n / n.sum()
    Cy = frac[:, None] * (d @ Y.T)
    Cd = frac[:, None] * (d @ d.T) * n[None, :]
    c = crv1_constant(cells.n_clusters, cells.n_periods, n.sum())
    return _Pre(np.sum(d * Y, axis=1), n * np.sum(d * d, axis=1), Cy, Cd, c)


def _draw_coefficients(pre: _Pre, W: np.ndarray) -> np.ndarray:
    """Per draw (rows of W): [w.P, w.Q, Saa, Sab, Sbb], shape (5, draws).

    For a DGP with beta = b0: t* = (w.P - b0 w.Q) / sqrt(c (Saa + 2 b0 Sab + b0^2 Sbb)).
    The score vectors a and b are linear in w, so one product with the matrix
    [A | B | P | Q] gives them and w.P, w.Q; it is formed transposed, (2G + 2, draws),
    so that the sums over clusters run along contiguous rows, a block of draws at a
    time (:data:`_PRODUCT_MACS`).
    """
    G = len(pre.P)
    sQ = pre.Q.sum()
    A = np.diag(pre.P) - pre.Cy.T - np.outer(pre.P, pre.Q / sQ)
    B = -np.diag(pre.Q) + pre.Cd.T + np.outer(pre.Q, pre.Q / sQ)
    M = np.vstack([A.T, B.T, pre.P, pre.Q])
    block = max(1, _PRODUCT_MACS // M.size)
    out = np.empty((5, len(W)))
    for start in range(0, len(W), block):
        ab = M @ W[start : start + block].T
        a, b = ab[:G], ab[G : 2 * G]
        cols = slice(start, start + ab.shape[1])
        out[0, cols], out[1, cols] = ab[2 * G], ab[2 * G + 1]
        np.einsum("ij,ij->j", a, a, out=out[2, cols])
        np.einsum("ij,ij->j", a, b, out=out[3, cols])
        np.einsum("ij,ij->j", b, b, out=out[4, cols])
    return out


def _t_star(coef: np.ndarray, b0: float, c: float) -> np.ndarray:
    """t* = (w.P - b0 w.Q) / sqrt(c max(Saa + 2 b0 Sab + b0^2 Sbb, 0)) per draw, with two temporaries."""
    wP, wQ, saa, sab, sbb = coef
    ss = sab * (2 * b0)
    ss += saa
    t = sbb * (b0 * b0)
    ss += t
    np.maximum(ss, 0.0, out=ss)
    ss *= c
    np.sqrt(ss, out=ss)
    np.multiply(wQ, b0, out=t)
    np.subtract(wP, t, out=t)
    with np.errstate(divide="ignore", invalid="ignore"):
        t /= ss
    return t


def bootstrap_t_stats(cells: Cells, W: np.ndarray, b0: float) -> np.ndarray:
    """Bootstrap t* = (beta* - b0)/se* for the weight matrix W (draws x G), DGP beta = b0."""
    pre = _precompute(cells)
    return _t_star(_draw_coefficients(pre, np.asarray(W, dtype=float)), b0, pre.c)


@lru_cache(maxsize=2)
def _weights(kind: str, n_clusters: int, draws: int, seed: int) -> np.ndarray:
    """All the weights of :func:`weight_chunks`, (draws x G), read-only.

    Kept for the next call: the bootstrap of a cohort and of each of its subgroups
    draws the same weights (same seed and number of municipalities).
    """
    W = np.concatenate(list(weight_chunks(kind, n_clusters, draws, seed)))
    W.flags.writeable = False
    return W


def weight_chunks(kind: str, n_clusters: int, draws: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded weight matrices (chunk x G), ``draws`` rows in all."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < draws:
        m = min(_CHUNK, draws - done)
        if kind == "webb":
            yield _WEBB[rng.integers(0, 6, size=(m, n_clusters))]
        else:
            yield rng.integers(0, 2, size=(m, n_clusters)).astype(float) * 2.0 - 1.0
        done += m


def all_sign_vectors(n_clusters: int) -> np.ndarray:
    """All 2^G Rademacher sign vectors, (2^G, G)."""
    codes = np.arange(2**n_clusters, dtype=np.int64)[:, None]
    return ((codes >> np.arange(n_clusters)) & 1).astype(float) * 2.0 - 1.0


def _validate(draws: int, weights: str, alpha: float) -> None:
    if weights not in WEIGHT_TYPES:
        raise ValueError(f"wild_cluster_bootstrap: weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    if int(draws) < 1:
        raise ValueError(f"wild_cluster_bootstrap: draws must be >= 1, got {draws}")
    if not 0 < alpha < 1:
        raise ValueError(f"wild_cluster_bootstrap: alpha must be in (0, 1), got {alpha}")


def wild_cluster_bootstrap(
    cells: Cells,
    *,
    null: float = 0.0,
    draws: int = 99_999,
    weights: WeightType = "webb",
    restricted: bool = True,
    alpha: float = 0.05,
    seed: int = 0,
    ci: bool = True,
) -> BootstrapResult:
    """Wild cluster bootstrap-t test of H0: beta = null and its confidence interval.

    Parameters
    ----------
    cells : cluster x period sums with the observed treatment
    null : hypothesised effect
    draws : bootstrap draws; Rademacher weights with 2^G <= draws enumerate all 2^G sign vectors
    weights : "webb" (six-point) or "rademacher"
    restricted : WCR (null imposed; CI by test inversion) or WCU (percentile-t CI)
    alpha : level of the interval
    seed : seed of the weight draws (the same draws serve every null in the CI)
    ci : compute the confidence interval

    Returns
    -------
    BootstrapResult ; p is the share of draws with |t*| >= |t| (two-sided, symmetric).
    """
    (res,) = wild_cluster_bootstraps(cells, null=null, draws=draws, weights=weights, restricted=(restricted,),
                                     alpha=alpha, seed=seed, ci=ci)
    return res


def wild_cluster_bootstraps(
    cells: Cells,
    *,
    null: float = 0.0,
    draws: int = 99_999,
    weights: WeightType = "webb",
    restricted: tuple[bool, ...] = (True, False),
    alpha: float = 0.05,
    seed: int = 0,
    ci: bool = True,
) -> tuple[BootstrapResult, ...]:
    """:func:`wild_cluster_bootstrap` for each of ``restricted`` (WCR, WCU) from one set of draws.

    WCR and WCU with the same seed draw the same weights, and their statistics are
    the same per-draw coefficients evaluated at a different b0, so the draws and
    coefficients are computed once; each result equals its own
    :func:`wild_cluster_bootstrap` call.
    """
    _validate(draws, weights, alpha)
    G = cells.n_clusters
    fit = twfe_fit(cells)
    pre = _precompute(cells)
    exact = weights == "rademacher" and 2**G <= draws
    W = all_sign_vectors(G) if exact else _weights(weights, G, int(draws), seed)
    coef = _draw_coefficients(pre, W)
    return tuple(_result(coef, pre.c, fit, null=null, weights=weights, restricted=r, alpha=alpha, ci=ci, exact=exact)
                 for r in restricted)


def bootstrap_p_values(cells: Cells, treats: np.ndarray, seeds: Sequence[int], *, draws: int,
                       weights: WeightType = "webb", restricted: bool = True) -> np.ndarray:
    """p-value of H0: beta = 0 under each of many treatments, the r-th with its own seed.

    Entry r is ``wild_cluster_bootstrap(cells.with_treatment(treats[r]), draws=draws,
    weights=weights, restricted=restricted, seed=seeds[r], ci=False).p_value``; the
    fits and precomputations of all the treatments (R, G, T) are done together, which
    is what a placebo study of hundreds of small bootstraps spends its time on.
    """
    _validate(draws, weights, 0.05)
    draws = int(draws)
    treats = np.asarray(treats, dtype=float)
    R, G, T = treats.shape
    n = np.asarray(cells.n, dtype=float)
    d = demean_treatment(treats, n)
    Y = demean_sums(cells.sums, n)
    P = np.sum(d * Y, axis=2)
    Q = n * np.sum(d * d, axis=2)
    den = Q.sum(axis=1)
    if not np.all(den > 0):
        raise ValueError("twfe_fit: the demeaned treatment is identically zero (no variation)")
    beta = P.sum(axis=1) / den
    c = crv1_constant(G, T, n.sum())
    se = np.sqrt(c * np.sum((P - beta[:, None] * Q) ** 2, axis=1)) / den
    t_obs = beta / se
    frac = n / n.sum()
    Cy = frac[:, None] * (d @ Y.T)
    Cd = frac[:, None] * (d @ d.transpose(0, 2, 1)) * n[None, :]
    exact = weights == "rademacher" and 2**G <= draws
    p = np.empty(R)
    for r in range(R):
        W = all_sign_vectors(G) if exact else np.concatenate(list(weight_chunks(weights, G, draws, int(seeds[r]))))
        t_star = _t_star(_draw_coefficients(_Pre(P[r], Q[r], Cy[r], Cd[r], c), W), 0.0 if restricted else beta[r], c)
        p[r] = np.mean(np.abs(t_star) >= abs(t_obs[r]) * (1 - _RTOL))
    return p


def _result(coef: np.ndarray, c: float, fit: TwfeFit, *, null: float, weights: str, restricted: bool, alpha: float,
            ci: bool, exact: bool) -> BootstrapResult:
    """p-value and interval of WCR or WCU from the per-draw coefficients."""

    def p_at(beta0: float) -> float:
        t_obs = (fit.beta - beta0) / fit.se
        b0 = beta0 if restricted else fit.beta
        t_star = _t_star(coef, b0, c)
        return float(np.mean(np.abs(t_star) >= abs(t_obs) * (1 - _RTOL)))

    p = p_at(null)
    lo = hi = np.nan
    if ci:
        if restricted:
            counter = _WcrCounter(coef, c, fit)
            lo, hi = _invert(counter.p_at, fit.beta, fit.se, alpha, narrow=counter.narrow)
        else:
            q = float(np.quantile(np.abs(_t_star(coef, fit.beta, c)), 1 - alpha))
            lo, hi = fit.beta - q * fit.se, fit.beta + q * fit.se
    return BootstrapResult(
        p_value=p,
        ci_low=float(lo),
        ci_high=float(hi),
        t_stat=(fit.beta - null) / fit.se,
        draws=coef.shape[1],
        weights=weights,
        restricted=restricted,
        exact_enumeration=exact,
    )


class _WcrCounter:
    """p(b0) of the WCR test for the interval's search, from the draws whose answer is not settled.

    :func:`_invert` bisects a bracket that only shrinks; over a bracket, each draw's
    |t*(b0)| (numerator linear, variance quadratic in b0) and the threshold
    |t(b0)| have bounds, and a draw whose bounds decide the comparison for every
    b0 in the bracket, with a wide margin for rounding, is counted once and
    dropped. The remaining draws are evaluated exactly as :func:`_t_star` does, so
    every p(b0) equals the count over all draws. Settling costs several passes
    over the open draws, so it is redone only when the bracket has shrunk eightfold.
    """

    _MARGIN = 1e-9  # relative: far above the rounding of t* and t (1e-15), far below any real gap
    _ROUNDING = 1e-12  # relative to the largest term summed: bounds the rounding of a computed N or S
    _SHRINK = 8.0

    def __init__(self, coef: np.ndarray, c: float, fit: TwfeFit):
        self.coef, self.c, self.fit = coef, c, fit
        self.draws = coef.shape[1]
        self.bracket: tuple[float, float] | None = None
        self.settled_width = np.inf
        self.open, self.counted = coef, 0

    def p_at(self, beta0: float) -> float:
        """Share of draws with |t*| >= |t| at ``beta0`` (the p-value of ``_result``)."""
        if self.bracket is not None and not self.bracket[0] <= beta0 <= self.bracket[1]:
            self.bracket, self.settled_width, self.open, self.counted = None, np.inf, self.coef, 0
        t_obs = (self.fit.beta - beta0) / self.fit.se
        t_star = _t_star(self.open, beta0, self.c)
        return (self.counted + int(np.count_nonzero(np.abs(t_star) >= abs(t_obs) * (1 - _RTOL)))) / self.draws

    def narrow(self, lo: float, hi: float) -> None:
        """The next p-values are asked for in [lo, hi]: settle the draws whose answer is the same all over it."""
        if self.bracket is None or not self.bracket[0] <= lo <= hi <= self.bracket[1]:
            self.settled_width, self.open, self.counted = np.inf, self.coef, 0
        self.bracket = (lo, hi)
        if hi - lo > self.settled_width / self._SHRINK:
            return
        self.settled_width = hi - lo
        wP, wQ, saa, sab, sbb = self.open
        far = max(abs(lo), abs(hi))
        n_lo, n_hi = wP - lo * wQ, wP - hi * wQ
        n_err = self._ROUNDING * (np.abs(wP).max() + far * np.abs(wQ).max())
        a_lo, a_hi = np.abs(n_lo), np.abs(n_hi)
        n_min = np.minimum(a_lo, a_hi)
        n_min -= n_err
        n_min[n_lo * n_hi <= 0] = -1.0  # the numerator crosses zero in the bracket
        n_max = np.maximum(a_lo, a_hi)
        n_max += n_err
        s_lo = saa + lo * (2 * sab + lo * sbb)
        s_hi = saa + hi * (2 * sab + hi * sbb)
        s_err = self._ROUNDING * (np.abs(saa).max() + 2 * far * np.abs(sab).max() + far * far * np.abs(sbb).max())
        s_max = np.maximum(s_lo, s_hi)
        s_max += s_err
        # the variance is convex in b0: above its tangent at lo all over the bracket
        s_min = np.minimum((sab + lo * sbb) * (2 * (hi - lo)), 0.0)
        s_min += s_lo
        s_min -= s_err
        beta, se = self.fit.beta, self.fit.se
        t_err = self._ROUNDING * (abs(beta) + far) / se
        t_max = max(abs(beta - lo), abs(beta - hi)) / se * (1 + self._MARGIN) + t_err
        t_min = 0.0 if lo <= beta <= hi else min(abs(beta - lo), abs(beta - hi)) / se * (1 - self._MARGIN) - t_err
        always = n_min > 0
        always &= n_min * n_min >= (self.c * t_max * t_max) * s_max
        if t_min > 0:
            never = s_min > 0
            never &= n_max * n_max <= (self.c * t_min * t_min) * s_min
            always |= never
            self.counted += int(np.count_nonzero(always)) - int(np.count_nonzero(never))
        else:
            self.counted += int(np.count_nonzero(always))
        self.open = self.open[:, ~always]


def _invert(p_at, center: float, scale: float, alpha: float, *, rtol: float = 1e-6,
            narrow=None) -> tuple[float, float]:
    """Endpoints of {b: p(b) > alpha}, searched outward from ``center`` (where p = 1).

    Brackets by doubling steps of ``scale`` and bisects to ``rtol * scale``; the
    first crossing on each side is reported (+-inf if none within 2^60 scales).
    ``narrow(lo, hi)``, if given, is told the bracket before each bisection step.
    """
    ends = []
    for sign in (-1.0, 1.0):
        inside, step = center, scale
        outside = None
        for _ in range(60):
            cand = center + sign * step
            if p_at(cand) <= alpha:
                outside = cand
                break
            inside, step = cand, step * 2
        if outside is None:
            ends.append(sign * np.inf)
            continue
        while abs(outside - inside) > rtol * scale:
            if narrow is not None:
                narrow(min(inside, outside), max(inside, outside))
            mid = 0.5 * (inside + outside)
            if p_at(mid) > alpha:
                inside = mid
            else:
                outside = mid
        ends.append(0.5 * (inside + outside))
    return ends[0], ends[1]
