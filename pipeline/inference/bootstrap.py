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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from pipeline.inference._twfe_algebra import TwfeFit, crv1_constant, demean_sums, demean_treatment, twfe_fit

if TYPE_CHECKING:  # the estimation package is imported lazily: it may be mid-edit
    from pipeline.estimation.cells import Cells

WeightType = Literal["webb", "rademacher"]
WEIGHT_TYPES: tuple[str, ...] = ("webb", "rademacher")

_WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
_CHUNK = 32_768  # rows per draw of weights: part of the seeded stream, fixed
_RTOL = 1e-10  # |t*| >= |t| up to rounding: ties (e.g. w = 1 under WCR) count as extreme


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
    so that the sums over clusters run along long contiguous rows.
    """
    G = len(pre.P)
    sQ = pre.Q.sum()
    A = np.diag(pre.P) - pre.Cy.T - np.outer(pre.P, pre.Q / sQ)
    B = -np.diag(pre.Q) + pre.Cd.T + np.outer(pre.Q, pre.Q / sQ)
    ab = np.vstack([A.T, B.T, pre.P, pre.Q]) @ W.T
    a, b = ab[:G], ab[G : 2 * G]
    return np.stack([ab[2 * G], ab[2 * G + 1], np.einsum("ij,ij->j", a, a), np.einsum("ij,ij->j", a, b),
                     np.einsum("ij,ij->j", b, b)])


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
    chunks = iter([all_sign_vectors(G)]) if exact else weight_chunks(weights, G, int(draws), seed)
    coef = np.concatenate([_draw_coefficients(pre, W) for W in chunks], axis=1)
    return tuple(_result(coef, pre.c, fit, null=null, weights=weights, restricted=r, alpha=alpha, ci=ci, exact=exact)
                 for r in restricted)


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
            lo, hi = _invert(p_at, fit.beta, fit.se, alpha)
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


def _invert(p_at, center: float, scale: float, alpha: float, *, rtol: float = 1e-6) -> tuple[float, float]:
    """Endpoints of {b: p(b) > alpha}, searched outward from ``center`` (where p = 1).

    Brackets by doubling steps of ``scale`` and bisects to ``rtol * scale``; the
    first crossing on each side is reported (+-inf if none within 2^60 scales).
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
            mid = 0.5 * (inside + outside)
            if p_at(mid) > alpha:
                inside = mid
            else:
                outside = mid
        ends.append(0.5 * (inside + outside))
    return ends[0], ends[1]
