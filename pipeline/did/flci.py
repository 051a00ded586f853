r"""Rambachan-Roth (HonestDiD) sensitivity of an event study to violations of parallel trends.

The input is an event study's coefficients and covariance, ordered
``[pre leads ..., post lags ...]`` with the reference period left out (its
coefficient and its trend violation are normalised to zero). Write
:math:`\beta = \tau + \delta` with :math:`\tau_{pre} = 0` (no anticipation) and
target :math:`\theta = l'\tau_{post}`. Two restrictions on the violation
:math:`\delta` bound how far the post-period trend may depart from what the
leads show:

*Relative magnitudes* :math:`\Delta^{RM}(\bar M)`: no post-period first
difference of :math:`\delta` exceeds :math:`\bar M` times the largest
pre-period first difference. The set reported is the identified set at the
point estimate (:math:`\delta_{pre} = \hat\beta_{pre}`) widened by
:math:`z_{1-\alpha/2}` standard errors of :math:`l'\hat\beta_{post}` on each
side, the construction of ``diff_diff`` 3.13 (``HonestDiD``), not the
conditional/hybrid ARP test of the R package: it treats the pre-period
maximum as known, so it is narrower than the ARP set when the leads are noisy.

*Smoothness* :math:`\Delta^{SD}(M)`: no second difference of :math:`\delta`
exceeds M. The set is the optimal fixed-length confidence interval (FLCI,
Rambachan and Roth 2023, section 4.1): the affine estimator
:math:`v'\hat\beta` with the shortest interval
:math:`v'\hat\beta \pm \sigma_v\,\mathrm{cv}_\alpha(\bar b_v / \sigma_v)`,
where :math:`\bar b_v` is its worst-case bias over :math:`\Delta^{SD}(M)` and
:math:`\mathrm{cv}_\alpha(t)` the :math:`1-\alpha` quantile of :math:`|N(t, 1)|`
(of a folded non-central t with ``df`` degrees of freedom when ``df`` is given).
The estimator is written in the slope weights w of R's HonestDiD; the
minimum-bias weights for each variance bound trace a lasso path in the
cumulated weights, computed exactly by homotopy, and the half-length is
minimised along that path.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import polars as pl
from scipy import optimize, special

Restriction = Literal["relative_magnitudes", "smoothness"]
"""The two restrictions on the trend violation."""

Method = Literal["idset_z", "flci"]
"""How a set was built: identified set widened by z standard errors, or the optimal FLCI."""

DEFAULT_MBAR: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
DEFAULT_M: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class EventStudyInput:
    """Validated event-study coefficients, covariance, period counts and target weights."""

    beta: np.ndarray
    sigma: np.ndarray
    n_pre: int
    n_post: int
    l: np.ndarray

    @property
    def estimate(self) -> float:
        """Target under parallel trends, l' beta_post."""
        return float(self.l @ self.beta[self.n_pre :])

    @property
    def std_error(self) -> float:
        """Standard error of l' beta_post."""
        s = self.sigma[self.n_pre :, self.n_pre :]
        return float(np.sqrt(self.l @ s @ self.l))


@dataclass(frozen=True)
class HonestBound:
    """One robust confidence set: the restriction, its bound M, the identified set and the interval.

    ``center`` and ``std_error`` are those of the estimator the interval is built
    around: l' beta_post for relative magnitudes, the FLCI's affine estimator for
    smoothness.
    """

    restriction: Restriction
    m: float
    id_low: float
    id_high: float
    ci_low: float
    ci_high: float
    method: Method
    center: float
    std_error: float

    def covers(self, value: float) -> bool:
        """Whether ``value`` lies in the confidence set."""
        return bool(self.ci_low <= value <= self.ci_high)


@dataclass(frozen=True)
class HonestResult:
    """Robust confidence sets over grids of M-bar and M, with the relative-magnitudes breakdown value."""

    bounds: tuple[HonestBound, ...]
    estimate: float
    std_error: float
    breakdown_mbar: float | None
    n_pre: int
    n_post: int
    l: np.ndarray
    alpha: float = 0.05
    df: int | None = None

    def tidy(self) -> pl.DataFrame:
        """One row per restriction and bound: m, the identified set, the interval and the method."""
        cols = ("restriction", "m", "ci_low", "ci_high", "method", "id_low", "id_high")
        rows = {c: [getattr(b, c) for b in self.bounds] for c in cols}
        schema = {c: (pl.String() if c in ("restriction", "method") else pl.Float64()) for c in cols}
        return pl.DataFrame(rows, schema=schema)


def event_study_input(
    estimate: Sequence[float] | np.ndarray,
    vcov: np.ndarray,
    *,
    n_pre: int,
    n_post: int,
    l: Sequence[float] | np.ndarray | None = None,
) -> EventStudyInput:
    """Check shapes and finiteness; ``l`` defaults to the average of the post-period effects."""
    beta = np.asarray(estimate, dtype=float).ravel()
    sigma = np.asarray(vcov, dtype=float)
    if n_pre < 1 or n_post < 1:
        raise ValueError(f"event study: expected n_pre >= 1 and n_post >= 1, found {n_pre} and {n_post}")
    k = n_pre + n_post
    if beta.shape != (k,):
        raise ValueError(f"estimate: expected {k} coefficients (n_pre + n_post), found {beta.size}")
    if sigma.shape != (k, k):
        raise ValueError(f"vcov: expected shape ({k}, {k}), found {sigma.shape}")
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(sigma))):
        raise ValueError("event study: expected finite estimates and covariance, found NaN or inf")
    if not np.allclose(sigma, sigma.T, rtol=1e-10, atol=1e-14):
        raise ValueError("vcov: expected a symmetric matrix")
    lv = np.full(n_post, 1.0 / n_post) if l is None else np.asarray(l, dtype=float).ravel()
    if lv.shape != (n_post,):
        raise ValueError(f"l: expected {n_post} weights (one per post period), found {lv.size}")
    return EventStudyInput(beta, (sigma + sigma.T) / 2, n_pre, n_post, lv)


@functools.lru_cache(maxsize=64)
def _critical_value(alpha: float, df: int | None) -> float:
    """Two-sided critical value: normal, or t(df) when ``df`` is given (memoised: the FLCI asks thousands of times)."""
    return float(special.ndtri(1 - alpha / 2) if df is None else special.stdtrit(df, 1 - alpha / 2))


def _folded_quantile(t: float, alpha: float, df: int | None) -> float:
    r"""cv_alpha(t): the x with :math:`P(|X| \le x) = 1-\alpha`, X ~ N(t, 1) or nct(df, t).

    Brent's method on [0, t + the two-sided critical value], the upper end doubled
    until it brackets the root. The FLCI search evaluates only this computation: its
    optimum is flat, so last-digit changes in cv can move the interval it picks by
    up to about 1e-7 (relative) when the optimum lies inside a piece of the path.
    """
    t = abs(t)
    if df is None:
        def cover(x: float) -> float:
            return float(special.ndtr(x - t) - special.ndtr(-x - t)) - (1 - alpha)
        hi = t + _critical_value(alpha, None)
    else:
        cover = _nct_cover(t, alpha, df)
        hi = t + _critical_value(alpha, df)
    # at t = 0 the root is the critical value itself, where cover may round below zero
    while cover(hi) < 0:
        hi *= 2
    return float(optimize.brentq(cover, 0.0, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps))


def _nct_cover(t: float, alpha: float, df: int, *, folded: bool = True) -> Callable[[float], float]:
    r""":math:`x \mapsto P(|X| \le x) - (1-\alpha)` for X ~ nct(df, t); without ``folded``, the lower fold is taken as 0."""
    def cover(x: float) -> float:
        # scipy's noncentral t returns NaN deep in the lower tail (large bias/sd): that fold is ~0 there
        lower = float(special.nctdtr(df, t, -x)) if folded else 0.0
        return float(special.nctdtr(df, t, x)) - (lower if np.isfinite(lower) else 0.0) - (1 - alpha)
    return cover


_FOLD_NEGLIGIBLE = 1e-18
r"""Bound on the lower fold, :math:`P(X \le -x) \le P(X \le 0) = \Phi(-t)`, below which it cannot move
:math:`P(|X| \le x)` near :math:`1-\alpha` at double precision."""


def _nct_quantile_guess(t: float, p: float, df: float) -> float:
    r"""Approximate p quantile of nct(df, t), t >= 0, from :math:`\Phi((x(1-\frac{1}{4df}) - t)/\sqrt{1 + x^2/(2df)})`.

    Within about 1% for df >= 5; NaN where the approximation has no root.
    """
    z = float(special.ndtri(p))
    a = 1 - 1 / (4 * df)
    quad = a * a - z * z / (2 * df)
    disc = a * a + (t * t - z * z) / (2 * df)
    if quad <= 0 or disc < 0:
        return float("nan")
    return (a * t + abs(z) * np.sqrt(disc)) / quad


def _folded_quantile_quick(t: float, alpha: float, df: int | None) -> float:
    r"""cv_alpha(t) as :func:`_folded_quantile` to a few units in the last place, in about a third of the time.

    For nct(df, t) the root is bracketed around an approximate quantile (at level
    :math:`1-\alpha` plus the lower fold's mass in the normal case), so Brent's
    method starts within about 1% of it, and the lower fold is not computed once
    :math:`\Phi(-t)` is below ``_FOLD_NEGLIGIBLE``; each is half the saving.
    """
    t = abs(t)
    if df is None:
        return _folded_quantile(t, alpha, None)
    cover = functools.lru_cache(maxsize=None)(_nct_cover(t, alpha, df,
                                                         folded=float(special.ndtr(-t)) >= _FOLD_NEGLIGIBLE))

    p = 1 - alpha + float(special.ndtr(-2 * t - float(special.ndtri(1 - alpha / 2))))
    x0 = _nct_quantile_guess(t, p, df)
    if not (np.isfinite(x0) and x0 > 0):
        x0 = t + _critical_value(alpha, df)
    step = 0.01 * x0
    lo, hi = (x0, x0 + step) if cover(x0) < 0 else (max(x0 - step, 0.0), x0)
    while cover(hi) < 0:
        step *= 2
        lo, hi = hi, hi + step
    while cover(lo) > 0:
        step *= 2
        lo, hi = max(lo - step, 0.0), lo
    return float(optimize.brentq(cover, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps))


def _post_fd_reach(l: np.ndarray) -> float:
    r"""max l'delta_post over post first differences bounded by 1 (delta_0 = 0): :math:`\sum_t |\sum_{s \ge t} l_s|`."""
    return float(np.abs(np.cumsum(l[::-1])).sum())


def _max_pre_fd(beta_pre: np.ndarray) -> float:
    """Largest absolute pre-period first difference of delta, through delta_0 = 0."""
    path = np.append(beta_pre, 0.0)
    return float(np.abs(np.diff(path)).max())


def relative_magnitudes_ci(
    estimate: Sequence[float] | np.ndarray,
    vcov: np.ndarray,
    *,
    n_pre: int,
    n_post: int,
    mbar: float,
    l: Sequence[float] | np.ndarray | None = None,
    alpha: float = 0.05,
    df: int | None = None,
) -> HonestBound:
    r"""Confidence set for :math:`l'\tau_{post}` under :math:`\Delta^{RM}(\bar M)`.

    .. math::

        [\hat\theta - \bar M m K - z\,\mathrm{se},\;\hat\theta + \bar M m K + z\,\mathrm{se}],\qquad
        m = \max_{s<0} |\hat\beta_{s+1} - \hat\beta_s|,\;
        K = \sum_{t \ge 1} \Big|\sum_{s \ge t} l_s\Big|

    with :math:`\hat\beta_0 = 0`; :math:`\bar M m K` is the largest
    :math:`|l'\delta_{post}|` whose post first differences stay within
    :math:`\bar M m`. At :math:`\bar M = 0` this is the parallel-trends interval.
    """
    es = event_study_input(estimate, vcov, n_pre=n_pre, n_post=n_post, l=l)
    _check_level(alpha, mbar, "mbar")
    half = mbar * _max_pre_fd(es.beta[: es.n_pre]) * _post_fd_reach(es.l)
    z = _critical_value(alpha, df)
    lo, hi = es.estimate - half, es.estimate + half
    sd = es.std_error
    return HonestBound("relative_magnitudes", float(mbar), lo, hi, lo - z * sd, hi + z * sd, "idset_z", es.estimate, sd)


def breakdown_relative_magnitudes(
    estimate: Sequence[float] | np.ndarray,
    vcov: np.ndarray,
    *,
    n_pre: int,
    n_post: int,
    l: Sequence[float] | np.ndarray | None = None,
    alpha: float = 0.05,
    df: int | None = None,
) -> float | None:
    r"""Smallest :math:`\bar M` at which the relative-magnitudes set includes 0.

    .. math::

        \bar M^* = \max\Big(0, \frac{|\hat\theta| - z\,\mathrm{se}}{m K}\Big)

    (the set widens linearly in :math:`\bar M`). None when the leads are all
    zero (m = 0) and the parallel-trends interval excludes 0: no M-bar breaks it.
    """
    es = event_study_input(estimate, vcov, n_pre=n_pre, n_post=n_post, l=l)
    gap = abs(es.estimate) - _critical_value(alpha, df) * es.std_error
    if gap <= 0:
        return 0.0
    slope = _max_pre_fd(es.beta[: es.n_pre]) * _post_fd_reach(es.l)
    return None if slope == 0 else gap / slope


def _second_difference_matrix(n_pre: int, n_post: int) -> np.ndarray:
    """Second differences of (delta_pre, delta_0 = 0, delta_post) as a matrix on (delta_pre, delta_post)."""
    k = n_pre + n_post + 1
    D2 = np.diff(np.eye(k), n=2, axis=0)
    return np.delete(D2, n_pre, axis=1)


def _smoothness_identified_set(es: EventStudyInput, m: float) -> tuple[float, float]:
    """Range of l'(beta_post - delta_post) with delta_pre = beta_pre and |second differences| <= M; NaN if empty."""
    D2 = _second_difference_matrix(es.n_pre, es.n_post)
    A_ub = np.vstack([D2, -D2])
    b_ub = np.full(A_ub.shape[0], m)
    k = es.n_pre + es.n_post
    A_eq = np.eye(k)[: es.n_pre]
    c = np.zeros(k)
    c[es.n_pre :] = es.l
    ends = []
    for sign in (1.0, -1.0):
        res = optimize.linprog(sign * c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=es.beta[: es.n_pre],
                               bounds=(None, None), method="highs")
        if res.status == 2:
            return float("nan"), float("nan")
        if not res.success:
            raise RuntimeError(f"smoothness identified set: linprog failed ({res.message})")
        ends.append(sign * res.fun)
    lo_delta, hi_delta = ends
    return es.estimate - hi_delta, es.estimate - lo_delta


@dataclass(frozen=True)
class _FlciPath:
    """The minimum-bias estimators for every variance bound, as a piecewise-linear lasso path.

    ``z(lam)`` (the free cumulated slope weights) is linear in ``lam`` between
    ``knots[i+1]`` and ``knots[i]``: ``z = icpt[i] + lam * slope[i]``. The
    variance of the estimator is ``z'Gz + g'z + c`` and its unit worst-case bias
    ``bias0 + ||z||_1``.
    """

    knots: np.ndarray
    icpt: np.ndarray
    slope: np.ndarray
    G: np.ndarray
    g: np.ndarray
    c: float
    bias0: float
    B1: np.ndarray
    b0: np.ndarray

    def z(self, lam: float) -> np.ndarray:
        """Free cumulated weights at penalty ``lam``."""
        i = int(np.clip(np.searchsorted(-self.knots, -lam, side="right") - 1, 0, len(self.knots) - 2))
        return self.icpt[i] + lam * self.slope[i]

    def sd(self, z: np.ndarray) -> float:
        """Standard deviation of the estimator with cumulated weights z."""
        return float(np.sqrt(max(z @ self.G @ z + self.g @ z + self.c, 0.0)))

    def bias(self, z: np.ndarray) -> float:
        """Worst-case bias per unit of M."""
        return self.bias0 + float(np.abs(z).sum())

    def v_pre(self, z: np.ndarray) -> np.ndarray:
        """Weights of the estimator on the pre-period coefficients."""
        return self.B1 @ z + self.b0


def _bias_constant(l: np.ndarray) -> float:
    r"""Part of the unit worst-case bias that does not depend on the slope weights (R HonestDiD).

    :math:`\sum_{s=1}^{\bar T} |\sum_{j=1}^{s} j\, l_{\bar T - s + j}| - \sum_s s\, l_s`; with
    the :math:`|\sum_t w_t|` term this equals the LP worst case for non-negative l.
    """
    T = len(l)
    head = sum(abs(float(np.arange(1, s + 1) @ l[T - s :])) for s in range(1, T + 1))
    return head - float(np.arange(1, T + 1) @ l)


def _flci_path(es: EventStudyInput) -> _FlciPath:
    r"""Exact homotopy of :math:`\min_z z'Gz + g'z + \lambda\|z\|_1` from :math:`\lambda_{max}` (z = 0) to 0.

    The estimator is :math:`l'\hat\beta_{post} - \sum_s w_s (\hat\beta_s - \hat\beta_{s-1})`
    with slope weights w over the pre periods (:math:`\hat\beta_0 = 0`) and
    :math:`\sum_s w_s = \sum_t t\,l_t` (no bias under linear trends). With
    u = cumsum(w), :math:`u_T` is fixed and z = u_{1..T-1} is free: the worst-case
    bias is :math:`M(\text{const} + |u_T| + \|z\|_1)`, the variance a quadratic in
    z. Minimising bias under a variance bound is the lasso in constraint form,
    so its solutions for all bounds form the lasso path.
    """
    k, lv = es.n_pre, es.l
    S_pre = es.sigma[:k, :k]
    S_cross = es.sigma[:k, k:] @ lv
    d = np.eye(k) - np.eye(k, k=-1)
    B = d @ d
    target = float(np.arange(1, es.n_post + 1) @ lv)
    B1, b0 = B[:, : k - 1], target * B[:, k - 1]
    G = B1.T @ S_pre @ B1
    g = 2 * B1.T @ (S_pre @ b0 + S_cross)
    c = float(b0 @ S_pre @ b0 + 2 * b0 @ S_cross + lv @ es.sigma[k:, k:] @ lv)
    p = k - 1
    bias0 = _bias_constant(lv) + abs(target)
    if p == 0:
        return _FlciPath(np.array([0.0, 0.0]), np.zeros((1, 0)), np.zeros((1, 0)), G, g, c, bias0, B1, b0)

    lam = float(np.abs(g).max())
    knots, icpts, slopes = [lam], [], []
    active: list[int] = []
    signs: dict[int, float] = {}
    if lam > 0:
        j = int(np.argmax(np.abs(g)))
        active, signs = [j], {j: float(np.sign(-g[j]))}
    while lam > 0:
        a_idx = np.array(active, dtype=int)
        s_a = np.array([signs[j] for j in active])
        H = 2 * G[np.ix_(a_idx, a_idx)]
        a_a = -np.linalg.solve(H, g[a_idx])
        b_a = -np.linalg.solve(H, s_a)
        icpt, slope = np.zeros(p), np.zeros(p)
        icpt[a_idx], slope[a_idx] = a_a, b_a
        # correlation of the inactive coordinates: c_j(lam) = -(2 G z + g)_j = alpha_j + lam * beta_j
        alpha_c = -(2 * G @ icpt + g)
        beta_c = -(2 * G @ slope)
        cand: list[tuple[float, int, str]] = []
        eps = 1e-12 * max(lam, 1.0)
        for j in range(p):
            if j in signs:
                if b_a[active.index(j)] != 0:
                    t = -a_a[active.index(j)] / b_a[active.index(j)]
                    if 0 < t < lam - eps:
                        cand.append((t, j, "leave"))
            else:
                for sgn in (1.0, -1.0):
                    den = sgn - beta_c[j]
                    if den != 0:
                        t = alpha_c[j] / den
                        if 0 < t < lam - eps:
                            cand.append((t, j, "join"))
        nxt = max(cand) if cand else (0.0, -1, "end")
        icpts.append(icpt)
        slopes.append(slope)
        lam = nxt[0]
        knots.append(lam)
        if nxt[2] == "leave":
            active.remove(nxt[1])
            del signs[nxt[1]]
        elif nxt[2] == "join":
            active.append(nxt[1])
            signs[nxt[1]] = float(np.sign(alpha_c[nxt[1]] + lam * beta_c[nxt[1]]))
        if not active and lam > 0:
            raise RuntimeError("FLCI lasso path: active set emptied before lambda reached 0")
    if not icpts:
        icpts, slopes, knots = [np.zeros(p)], [np.zeros(p)], [0.0, 0.0]
    return _FlciPath(np.array(knots), np.array(icpts), np.array(slopes), G, g, c, bias0, B1, b0)


def smoothness_flci(
    estimate: Sequence[float] | np.ndarray,
    vcov: np.ndarray,
    *,
    n_pre: int,
    n_post: int,
    m: float,
    l: Sequence[float] | np.ndarray | None = None,
    alpha: float = 0.05,
    df: int | None = None,
) -> HonestBound:
    r"""Optimal FLCI for :math:`l'\tau_{post}` under :math:`\Delta^{SD}(M)`.

    .. math::

        \min_{v}\; \sigma_v\,\mathrm{cv}_\alpha\!\Big(\frac{M\,\bar b(v)}{\sigma_v}\Big),\qquad
        CI = v'\hat\beta \pm \sigma_v\,\mathrm{cv}_\alpha(M\bar b(v)/\sigma_v)

    At M = 0 this is the minimum-variance estimator unbiased under any linear
    trend through the reference period (linear extrapolation of the leads).
    """
    es = event_study_input(estimate, vcov, n_pre=n_pre, n_post=n_post, l=l)
    _check_level(alpha, m, "m")
    return _smoothness_bound(es, m, alpha, df, _flci_path(es))


_FLOOR_EVALS = 16
"""Critical values spent per linear piece on trying to rule it out before searching it."""


def _half_floor(path: _FlciPath, i: int, u: float, v: float, m: float, alpha: float, df: int | None) -> float:
    r"""Lower bound of the half-length over :math:`\lambda \in [u, v]` inside piece ``i`` of the path.

    :math:`\sigma_{min}\,\mathrm{cv}_\alpha(M \bar b_{min} / \sigma_{max})`: cv is increasing in |t|
    (given the chi scale, :math:`|N(t, 1)|` is stochastically increasing in |t|), z is linear in
    :math:`\lambda`, so each :math:`|z_j|` is smallest at an end or zero where it changes sign,
    and the variance is a convex quadratic, largest at an end and smallest at an end or its vertex.
    """
    a, b = path.icpt[i], path.slope[i]
    zu, zv = a + u * b, a + v * b
    bias = path.bias0 + float(np.where(zu * zv <= 0, 0.0, np.minimum(np.abs(zu), np.abs(zv))).sum())
    sds = [path.sd(zu), path.sd(zv)]
    curv = float(b @ path.G @ b)
    if curv > 0:
        vertex = -float(2 * a @ path.G @ b + path.g @ b) / (2 * curv)
        if u < vertex < v:
            sds.append(path.sd(a + vertex * b))
    lo_sd, hi_sd = min(sds), max(sds[:2])
    return _folded_quantile_quick(m * max(bias, 0.0) / hi_sd, alpha, df) * lo_sd if lo_sd > 0 else 0.0


def _piece_exceeds(path: _FlciPath, i: int, bar: float, m: float, alpha: float, df: int | None) -> bool:
    """Whether the half-length provably exceeds ``bar`` on all of piece ``i``: floors over halving splits."""
    todo = [(float(path.knots[i + 1]), float(path.knots[i]))]
    for _ in range(_FLOOR_EVALS):
        if not todo:
            return True
        u, v = todo.pop(0)
        if _half_floor(path, i, u, v, m, alpha, df) <= bar:
            todo += [(u, (u + v) / 2), ((u + v) / 2, v)]
    return not todo


def _smoothness_bound(es: EventStudyInput, m: float, alpha: float, df: int | None, path: _FlciPath) -> HonestBound:
    """FLCI along a precomputed path: minimise the half-length over each linear piece, keep the best.

    A piece is searched unless its half-length provably stays above the best knot
    (with a 1e-9 relative margin for rounding): such a piece cannot hold the
    minimum, so skipping it leaves the result as it is.
    """
    known: dict[float, float] = {}

    def half(lam: float) -> float:
        if lam not in known:
            z = path.z(lam)
            sd = path.sd(z)
            known[lam] = _folded_quantile(m * path.bias(z) / sd, alpha, df) * sd if sd > 0 else np.inf
        return known[lam]

    best_lam, best = 0.0, half(0.0)
    if m > 0:
        at_knots = [half(lam) for lam in path.knots]
        bar = min(at_knots) * (1 + 1e-9)
        for i, (hi, lo) in enumerate(zip(path.knots[:-1], path.knots[1:])):
            for lam, val in ((hi, at_knots[i]), (lo, at_knots[i + 1])):
                if val < best:
                    best_lam, best = lam, val
            if hi - lo > 0 and not (min(at_knots[i : i + 2]) > bar and _piece_exceeds(path, i, bar, m, alpha, df)):
                res = optimize.minimize_scalar(half, bounds=(lo, hi), method="bounded",
                                               options={"xatol": 1e-13 * max(hi, 1e-300)})
                if res.fun < best:
                    best_lam, best = float(res.x), float(res.fun)
    if not np.isfinite(best):
        raise ValueError("smoothness FLCI: the estimator has zero variance; expected a covariance of full rank")
    z = path.z(best_lam)
    center = float(path.v_pre(z) @ es.beta[: es.n_pre]) + es.estimate
    id_low, id_high = _smoothness_identified_set(es, m)
    sd = path.sd(z)
    return HonestBound("smoothness", float(m), id_low, id_high, center - best, center + best, "flci", center, sd)


def _check_level(alpha: float, m: float, name: str) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a value in (0, 1), found {alpha}")
    if not (np.isfinite(m) and m >= 0):
        raise ValueError(f"{name}: expected a finite value >= 0, found {m}")


def honest_did(
    estimate: Sequence[float] | np.ndarray,
    vcov: np.ndarray,
    *,
    n_pre: int,
    n_post: int,
    l: Sequence[float] | np.ndarray | None = None,
    mbar_grid: Sequence[float] = DEFAULT_MBAR,
    m_grid: Sequence[float] = DEFAULT_M,
    alpha: float = 0.05,
    df: int | None = None,
) -> HonestResult:
    r"""Robust confidence sets under :math:`\Delta^{RM}(\bar M)` and :math:`\Delta^{SD}(M)` over two grids.

    ``estimate`` and ``vcov`` are the event-study coefficients ordered
    ``[leads ..., lags ...]`` without the reference period (the n_pre leads end
    just before it, the n_post lags start just after it); ``l`` weights the lags
    (default: their average). ``df=None`` uses normal critical values as
    ``diff_diff`` does; pass G - 1 for the package's t(G - 1) convention.

    Examples
    --------
    >>> import numpy as np
    >>> res = honest_did([0.02, -0.01, 0.5, 0.6], np.diag([0.01, 0.01, 0.02, 0.02]),
    ...                  n_pre=2, n_post=2, mbar_grid=[0, 1], m_grid=[0])
    >>> res.tidy()["restriction"].to_list()
    ['relative_magnitudes', 'relative_magnitudes', 'smoothness']
    >>> round(res.breakdown_mbar, 4)
    7.8667
    """
    es = event_study_input(estimate, vcov, n_pre=n_pre, n_post=n_post, l=l)
    rm = [relative_magnitudes_ci(es.beta, es.sigma, n_pre=n_pre, n_post=n_post, mbar=mb, l=es.l,
                                 alpha=alpha, df=df) for mb in mbar_grid]
    for m in m_grid:
        _check_level(alpha, m, "m")
    path = _flci_path(es)
    sd = [_smoothness_bound(es, float(m), alpha, df, path) for m in m_grid]
    brk = breakdown_relative_magnitudes(es.beta, es.sigma, n_pre=n_pre, n_post=n_post, l=es.l, alpha=alpha, df=df)
    return HonestResult(tuple(rm + sd), es.estimate, es.std_error, brk, n_pre, n_post, es.l, alpha, df)
