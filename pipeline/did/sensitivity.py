"""Sensitivity of event-study conclusions to violations of parallel trends.

Rambachan and Roth (2023) replace the assumption that the post-treatment
differences in trends :math:`\\delta_{post}` are zero by the assumption that
the vector of differences in trends :math:`\\delta` lies in a set
:math:`\\Delta` that is informed by the pre-treatment differences, and give
confidence intervals for :math:`\\theta = l'\\tau_{post}` that are valid
uniformly over :math:`\\Delta`. The event-study coefficients decompose as

.. math::

    \\hat\\beta \\sim N(\\beta, \\Sigma), \\qquad
    \\beta = \\begin{pmatrix} 0 \\\\ \\tau_{post} \\end{pmatrix} + \\delta,
    \\qquad \\delta \\in \\Delta .

Two sets are implemented, each with the confidence interval that R
HonestDiD computes for it by default:

``relative_magnitudes``
    :math:`\\Delta^{RM}(\\bar M)`: every post-treatment first difference of
    :math:`\\delta` is at most :math:`\\bar M` times the largest
    pre-treatment first difference. The set is a finite union of polyhedra
    (one per location and sign of the largest pre-treatment difference); the
    interval is the union over them of the conditional-least-favourable
    hybrid test of Andrews, Roth and Pakes (2023) inverted over a grid of
    :math:`\\theta` (R: ``computeConditionalCS_DeltaRM``, method ``"C-LF"``).
``smoothness``
    :math:`\\Delta^{SD}(M)`: second differences of :math:`\\delta` are at most
    :math:`M` in absolute value. The interval is the optimal fixed-length
    confidence interval (FLCI) over affine estimators
    (R: ``findOptimalFLCI``).

The module is domain-free: it takes the coefficient vector and its
covariance, pre-periods first and the reference period left out, as R
HonestDiD's ``createSensitivityResults`` and
``createSensitivityResults_relativeMagnitudes`` do.

Where R HonestDiD simulates, this module computes exactly or replays R's
draws:

* the least-favourable critical value uses 1000 draws from R's Mersenne
  Twister seeded as ``set.seed(0)`` with R's inversion normals and mvtnorm's
  symmetric square root, so its Monte Carlo draws are those of R;
* the linear programs of the ARP test are solved by enumerating the vertices
  of their dual polytope once, which gives the minimum and its dual vertex
  for every grid point and every draw by one matrix product, and the
  truncation points of the dual approach in closed form (R bisects); with
  many post-periods, too many bases to list, HiGHS finds the vertices as
  they are needed, and only the draws that can reach the least-favourable
  quantile and the grid points that pass the first stage are solved;
* the FLCI follows the whole frontier of worst-case bias against standard
  deviation (a lasso path, exact) and uses the exact folded-normal quantile
  where R draws a million normals.

References
----------
Rambachan, A. and J. Roth (2023). "A More Credible Approach to Parallel
Trends." *Review of Economic Studies* 90(5), 2555-2591.

Andrews, I., J. Roth and A. Pakes (2023). "Inference for Linear Conditional
Moment Inequalities." *Review of Economic Studies* 90(6), 2763-2791.

Armstrong, T. B. and M. Kolesár (2018). "Optimal Inference in a Class of
Regression Models." *Econometrica* 86(2), 655-683.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb
from typing import Literal

import numpy as np
import polars as pl
from scipy import optimize, special

__all__ = [
    "METHODS",
    "TARGETS",
    "THETA_GRIDS",
    "Method",
    "OpenIntervalWarning",
    "SensitivityInputError",
    "Target",
    "ThetaGrid",
    "honest_from_estimates",
    "original_ci",
]

Method = Literal["relative_magnitudes", "smoothness"]
Target = Literal["average", "first"]
ThetaGrid = Literal["zero", "estimate"]
METHODS: tuple[str, ...] = ("relative_magnitudes", "smoothness")
TARGETS: tuple[str, ...] = ("average", "first")
THETA_GRIDS: tuple[str, ...] = ("zero", "estimate")

_LF_SIMS = 1000
_LF_SEED = 0
_TOL_LAMBDA = 1e-6
_MAX_VERTEX_SUBSETS = 20_000


class SensitivityInputError(ValueError):
    """The estimates, covariance or options do not fit together."""


class OpenIntervalWarning(UserWarning):
    """A relative-magnitudes interval reaches the end of the grid of candidate effects."""


@dataclass(frozen=True)
class _Problem:
    """Validated inputs of a sensitivity analysis."""

    betahat: np.ndarray
    sigma: np.ndarray
    num_pre: int
    num_post: int
    l_vec: np.ndarray
    alpha: float


# --------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------


def honest_from_estimates(
    betahat: np.ndarray,
    sigma: np.ndarray,
    *,
    num_pre: int,
    num_post: int,
    method: Method,
    values: Sequence[float],
    target: Target | np.ndarray = "average",
    alpha: float = 0.05,
    grid_points: int = 1000,
    theta_grid: ThetaGrid = "zero",
) -> pl.DataFrame:
    """Robust confidence intervals for :math:`l'\\tau_{post}` over a range of restrictions.

    Parameters
    ----------
    betahat : numpy.ndarray
        Event-study coefficients, ``num_pre`` pre-periods (earliest first)
        then ``num_post`` post-periods; the reference period is left out.
    sigma : numpy.ndarray
        Covariance matrix of ``betahat``.
    num_pre, num_post : int
        Numbers of pre- and post-treatment coefficients.
    method : {"relative_magnitudes", "smoothness"}
        ``"relative_magnitudes"``: :math:`\\Delta^{RM}(\\bar M)` with the
        conditional-least-favourable hybrid ARP interval;
        ``"smoothness"``: :math:`\\Delta^{SD}(M)` with the optimal FLCI.
    values : sequence of float
        :math:`\\bar M` for relative magnitudes, :math:`M` for smoothness.
    target : {"average", "first"} or numpy.ndarray
        The weights :math:`l` of the post-period effects: their average, the
        first post-period (R's default), or any vector of length
        ``num_post``.
    alpha : float
        One minus the coverage.
    grid_points : int
        Number of candidate :math:`\\theta` tested for relative magnitudes.
    theta_grid : {"zero", "estimate"}
        Where the candidates lie. ``"zero"``: evenly on :math:`\\pm 20`
        standard errors of :math:`l'\\hat\\beta_{post}` around zero, as R
        HonestDiD's released code. ``"estimate"``: around
        :math:`l'\\hat\\beta_{post}`, widened by the most the identified set
        can move, :math:`\\bar M \\sum_t t|l_t| \\max_s|\\Delta\\hat\\beta_s|`,
        as the Stata package ``honestdid`` (and the R branch with which R
        HonestDiD's README of March 2024 was rendered); an interval reaching
        the edge of the ``"zero"`` grid is cut off there.

    Returns
    -------
    polars.DataFrame
        One row per value: ``value``, ``ci_low``, ``ci_high``. An empty
        relative-magnitudes set has both bounds NaN.

    Notes
    -----
    Relative magnitudes: for each period :math:`s \\le 0` and sign, the
    polyhedron :math:`A_{s,\\pm}\\delta \\le 0` is tested by the ARP
    conditional test with the least-favourable first stage of size
    :math:`\\kappa = \\alpha/10`, using only the moments that involve
    post-periods; :math:`\\theta` is accepted if any polyhedron accepts it
    and the interval runs from the least to the largest accepted grid point.

    Smoothness: the interval is
    :math:`a + v'\\hat\\beta \\pm \\chi`, minimising the half-length
    :math:`\\chi = sd \\cdot cv_\\alpha(\\overline{bias}/sd)` over affine
    estimators whose post-period weights are :math:`l`.

    Examples
    --------
    >>> import numpy as np
    >>> b = np.array([0.0, 0.01, 0.05])
    >>> v = np.diag([1e-4, 1e-4, 1e-4])
    >>> honest_from_estimates(b, v, num_pre=2, num_post=1,
    ...                       method="smoothness", values=[0.0]).shape
    (1, 3)
    """
    problem = _validate(betahat, sigma, num_pre, num_post, target, alpha)
    vals = _validate_values(values)
    if method == "relative_magnitudes":
        if grid_points < 2:
            raise SensitivityInputError(f"grid_points: expected at least 2, found {grid_points}")
        if theta_grid not in THETA_GRIDS:
            raise SensitivityInputError(
                f"theta_grid: expected one of {THETA_GRIDS}, found {theta_grid!r}"
            )
        bounds = [_rm_interval(problem, mbar, _theta_grid(problem, mbar, grid_points, theta_grid))
                  for mbar in vals]
    elif method == "smoothness":
        bounds = [_flci(problem, m)[:2] for m in vals]
    else:
        raise SensitivityInputError(f"method: expected one of {METHODS}, found {method!r}")
    return pl.DataFrame(
        {
            "value": vals,
            "ci_low": [b[0] for b in bounds],
            "ci_high": [b[1] for b in bounds],
        },
        schema={"value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64},
    )


def original_ci(
    betahat: np.ndarray,
    sigma: np.ndarray,
    *,
    num_pre: int,
    num_post: int,
    target: Target | np.ndarray = "average",
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Conventional interval :math:`l'\\hat\\beta_{post} \\pm z_{1-\\alpha/2}\\,se` under parallel trends.

    Parameters
    ----------
    betahat, sigma, num_pre, num_post, target, alpha
        As in :func:`honest_from_estimates`.

    Returns
    -------
    tuple of float
        Lower and upper bound (R: ``constructOriginalCS``).
    """
    p = _validate(betahat, sigma, num_pre, num_post, target, alpha)
    post = slice(p.num_pre, p.num_pre + p.num_post)
    est = float(p.l_vec @ p.betahat[post])
    se = float(np.sqrt(p.l_vec @ p.sigma[post, post] @ p.l_vec))
    z = float(special.ndtri(1.0 - p.alpha / 2.0))
    return est - z * se, est + z * se


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _validate(
    betahat: np.ndarray,
    sigma: np.ndarray,
    num_pre: int,
    num_post: int,
    target: Target | np.ndarray,
    alpha: float,
) -> _Problem:
    b = np.asarray(betahat, dtype=float).reshape(-1)
    s = np.asarray(sigma, dtype=float)
    if num_pre < 1 or num_post < 1:
        raise SensitivityInputError(
            f"num_pre, num_post: expected both >= 1, found {num_pre}, {num_post}"
        )
    n = num_pre + num_post
    if b.shape != (n,):
        raise SensitivityInputError(
            f"betahat: expected {n} = num_pre + num_post coefficients, found {b.size}"
        )
    if s.shape != (n, n):
        raise SensitivityInputError(f"sigma: expected shape ({n}, {n}), found {s.shape}")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(s))):
        raise SensitivityInputError("betahat, sigma: expected finite values, found NaN or inf")
    if not np.allclose(s, s.T, rtol=1e-8, atol=1e-14 * float(np.abs(s).max() or 1.0)):
        raise SensitivityInputError("sigma: expected a symmetric matrix")
    if not 0.0 < alpha < 1.0:
        raise SensitivityInputError(f"alpha: expected a number in (0, 1), found {alpha}")
    return _Problem(b, (s + s.T) / 2.0, num_pre, num_post, _target_vector(target, num_post), alpha)


def _target_vector(target: Target | np.ndarray, num_post: int) -> np.ndarray:
    if isinstance(target, str):
        if target == "average":
            return np.full(num_post, 1.0 / num_post)
        if target == "first":
            return np.eye(num_post)[0]
        raise SensitivityInputError(f"target: expected one of {TARGETS} or weights, found {target!r}")
    l_vec = np.asarray(target, dtype=float).reshape(-1)
    if l_vec.shape != (num_post,) or not np.all(np.isfinite(l_vec)) or not np.any(l_vec):
        raise SensitivityInputError(
            f"target: expected {num_post} finite weights, not all zero, found {l_vec.tolist()}"
        )
    return l_vec


def _validate_values(values: Sequence[float]) -> list[float]:
    vals = [float(v) for v in values]
    if not vals or any(not np.isfinite(v) or v < 0 for v in vals):
        raise SensitivityInputError(f"values: expected non-negative numbers, found {list(values)}")
    return vals


# --------------------------------------------------------------------------
# Relative magnitudes: the ARP conditional / least-favourable hybrid test
# --------------------------------------------------------------------------


def _theta_grid(p: _Problem, mbar: float, grid_points: int, kind: ThetaGrid) -> np.ndarray:
    post = slice(p.num_pre, p.num_pre + p.num_post)
    sd_theta = float(np.sqrt(p.l_vec @ p.sigma[post, post] @ p.l_vec))
    if kind == "zero":
        return np.linspace(-20.0 * sd_theta, 20.0 * sd_theta, grid_points)
    pre = np.append(p.betahat[: p.num_pre], 0.0)
    max_pre = float(np.abs(np.diff(pre)).max()) if p.num_pre > 1 else abs(float(pre[0]))
    reach = mbar * float(np.arange(1, p.num_post + 1) @ np.abs(p.l_vec)) * max_pre
    centre = float(p.betahat[post] @ p.l_vec)
    half = reach + 20.0 * sd_theta
    return np.linspace(centre - half, centre + half, grid_points)


def _rm_interval(p: _Problem, mbar: float, grid: np.ndarray) -> tuple[float, float]:
    accept = np.zeros(grid.size, dtype=bool)
    for s in range(-(p.num_pre - 1), 1):
        for positive in (True, False):
            a_rm = _rm_constraints(p.num_pre, p.num_post, mbar, s, positive)
            accept |= _arp_accepts(p, a_rm, grid, p.alpha / 10.0)
    if not accept.any():
        return float("nan"), float("nan")
    if accept[0] or accept[-1]:
        warnings.warn(
            f"Mbar={mbar:g}: the interval reaches the end of the grid [{grid[0]:.6g}, {grid[-1]:.6g}]"
            " and may be longer; widen it with theta_grid='estimate'",
            OpenIntervalWarning,
            stacklevel=4,
        )
    return float(grid[accept].min()), float(grid[accept].max())


def _rm_constraints(
    num_pre: int, num_post: int, mbar: float, s: int, positive: bool
) -> np.ndarray:
    """Rows of :math:`A` with :math:`\\Delta^{RM}_{s,\\pm}(\\bar M) = \\{\\delta: A\\delta \\le 0\\}`.

    Every first difference is bounded in absolute value by the first
    difference ending at period ``s`` (times :math:`\\bar M` after
    treatment), which is signed by ``positive``; the column of the
    reference period is dropped and only rows involving post-periods kept.
    """
    n = num_pre + num_post
    diffs = np.zeros((n, n + 1))
    idx = np.arange(n)
    diffs[idx, idx] = -1.0
    diffs[idx, idx + 1] = 1.0
    v_max = np.zeros(n + 1)
    v_max[num_pre + s - 1] = -1.0
    v_max[num_pre + s] = 1.0
    if not positive:
        v_max = -v_max
    scale = np.where(np.arange(n) < num_pre, 1.0, mbar)[:, None]
    bound = scale * v_max[None, :]
    a = np.vstack([diffs - bound, -diffs - bound])
    a = a[np.einsum("ij,ij->i", a, a) > 1e-10]
    a = np.delete(a, num_pre, axis=1)
    return a[np.any(a[:, num_pre:] != 0.0, axis=1)]


def _gamma_matrix(l_vec: np.ndarray) -> np.ndarray:
    """Invertible matrix with first row :math:`l'` (R's ``.construct_Gamma``).

    The remaining rows are the unit vectors, less the one of the last
    non-zero weight: the pivot columns of the reduced row echelon form of
    :math:`[l, I]`.
    """
    last = int(np.flatnonzero(l_vec)[-1])
    eye = np.eye(l_vec.size)
    return np.vstack([l_vec, np.delete(eye, last, axis=0)])


def _arp_accepts(p: _Problem, a_full: np.ndarray, grid: np.ndarray, kappa: float) -> np.ndarray:
    """Grid points not rejected by the ARP least-favourable hybrid test of one polyhedron."""
    post = slice(p.num_pre, p.num_pre + p.num_post)
    a_gamma_inv = a_full[:, post] @ np.linalg.inv(_gamma_matrix(p.l_vec))
    a_theta, x = a_gamma_inv[:, 0], a_gamma_inv[:, 1:]
    sigma_y = a_full @ p.sigma @ a_full.T
    polytope = _DualPolytope.build(np.sqrt(np.diag(sigma_y)), x)
    if polytope.empty:
        return np.ones(grid.size, dtype=bool)  # unbounded LP: R does not reject
    lf_cv = polytope.upper_quantile(_r_rmvnorm(_LF_SIMS, sigma_y, _LF_SEED).T, 1.0 - kappa)
    ys = (a_full @ p.betahat)[:, None] - a_theta[:, None] * grid[None, :]
    eta, lam = polytope.maximum(ys, above=lf_cv)
    mod_size = (p.alpha - kappa) / (1.0 - kappa)
    reject = eta > lf_cv
    if reject.all():
        return ~reject
    truncate_at_lf = p.num_post > 1  # R's no-nuisance path does not cap vup at lf_cv
    _, vertex_of = np.unique(np.round(lam / np.abs(lam).max(), 10), axis=0, return_inverse=True)
    vertex_of = vertex_of.reshape(-1)
    for v in np.unique(vertex_of[~reject]):
        cols = np.flatnonzero((vertex_of == v) & ~reject)
        reject[cols] = _conditional_rejects(
            polytope, lam[cols[0]], sigma_y, ys[:, cols], eta[cols], lf_cv, mod_size, truncate_at_lf
        )
    return ~reject


class _UnboundedProgram(Exception):
    """ARP's linear program has no minimum: the dual polytope is empty."""


@dataclass(frozen=True)
class _DualPolytope:
    """The polytope :math:`\\{\\lambda \\ge 0: sd'\\lambda = 1, X'\\lambda = 0\\}` of ARP's linear program.

    The test statistic :math:`\\eta(y) = \\min\\{\\eta: y - X\\delta \\le \\eta\\,
    sd\\}` equals :math:`\\max_\\lambda \\lambda'y` over this polytope, which
    does not depend on :math:`y`. When the candidate bases are few its
    vertices (supported on at most :math:`k+1` moments) are listed once, and
    :math:`\\eta` and the optimal dual vertex for every :math:`y` come from one
    matrix product; otherwise vertices are found by HiGHS's dual simplex as
    needed and reused wherever the primal solution they imply is feasible.
    """

    sd: np.ndarray
    x: np.ndarray
    vertices: np.ndarray | None  # every vertex, or None when they are found as needed
    empty: bool
    lazy: _LazyVertices | None = None

    @classmethod
    def build(cls, sd: np.ndarray, x: np.ndarray) -> _DualPolytope:
        m, k = x.shape
        if m < k + 1:
            return cls(sd, x, np.zeros((0, m)), True)
        if comb(m, k + 1) <= _MAX_VERTEX_SUBSETS:
            vertices = _dual_vertices(sd, x)
            return cls(sd, x, vertices, vertices.shape[0] == 0)
        lazy = _LazyVertices(sd, x)
        try:
            lazy.solve(np.zeros(m))
        except _UnboundedProgram:
            return cls(sd, x, None, True)
        return cls(sd, x, None, False, lazy)

    def maximum(self, ys: np.ndarray, above: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """:math:`\\eta` for each column of ``ys`` and an optimal vertex (rows).

        Where :math:`\\eta` is certainly larger than ``above`` it may be
        reported as infinite, with a zero vertex.
        """
        if self.vertices is not None:
            values = self.vertices @ ys
            best = np.argmax(values, axis=0)
            return values[best, np.arange(ys.shape[1])], self.vertices[best]
        assert self.lazy is not None
        eta, lam = np.full(ys.shape[1], np.inf), np.zeros((ys.shape[1], ys.shape[0]))
        todo = self.lazy.lower_bounds(ys) <= above
        if todo.any():
            eta[todo], lam[todo] = self.lazy.maximum(ys[:, todo])
        return eta, lam

    def upper_quantile(self, ys: np.ndarray, q: float) -> float:
        """Quantile ``q`` (R's type 7) of :math:`\\eta` over the columns of ``ys``."""
        if self.vertices is not None:
            return float(np.quantile((self.vertices @ ys).max(axis=0), q))
        assert self.lazy is not None
        return self.lazy.upper_quantile(ys, q)

    def truncation(
        self, gamma: np.ndarray, sigma_y: np.ndarray, ys: np.ndarray, var_b: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Range of :math:`c = \\gamma'y` over which ``gamma`` stays optimal along :math:`y = s + bc` (exact)."""
        b = sigma_y @ gamma / var_b
        s_t = ys - b[:, None] * (gamma @ ys)[None, :]
        if self.vertices is not None:
            slope = 1.0 - self.vertices @ b
            level = self.vertices @ s_t
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = level / slope[:, None]
            lower = np.where(slope[:, None] > 1e-12, ratio, -np.inf).max(axis=0)
            upper = np.where(slope[:, None] < -1e-12, ratio, np.inf).min(axis=0)
            return lower, upper
        assert self.lazy is not None
        eta, sigma_b = gamma @ ys, np.sqrt(var_b)
        low0 = np.minimum(-100.0, eta - 20.0 * sigma_b)  # R's starting bracket
        high0 = np.maximum(100.0, eta + 20.0 * sigma_b)
        return self.lazy.edges(s_t, b, low0), self.lazy.edges(s_t, b, high0)


def _dual_vertices(sd: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Every vertex of the dual polytope, from the bases of :math:`k+1` moments."""
    m, k = x.shape
    w = np.column_stack([sd, x])
    subsets = np.array(list(itertools.combinations(range(m), k + 1)), dtype=np.intp)
    mats = np.transpose(w[subsets], (0, 2, 1))  # W_S', (n, k+1, k+1)
    scale = np.prod(np.linalg.norm(mats, axis=2), axis=1)
    ok = np.abs(np.linalg.det(mats)) > 1e-10 * scale
    rhs = np.zeros((int(ok.sum()), k + 1, 1))
    rhs[:, 0, 0] = 1.0
    sol = np.linalg.solve(mats[ok], rhs)[:, :, 0]
    feasible = np.all(sol >= -1e-12 * np.abs(sol).max(axis=1, keepdims=True), axis=1)
    lam = np.zeros((int(feasible.sum()), m))
    rows = np.repeat(np.arange(lam.shape[0]), k + 1)
    lam[rows, subsets[ok][feasible].reshape(-1)] = np.clip(sol[feasible], 0.0, None).reshape(-1)
    if lam.shape[0] == 0:
        return lam
    key = np.round(lam / np.abs(lam).max(), 10)
    _, first = np.unique(key, axis=0, return_index=True)
    return lam[np.sort(first)]


class _LazyVertices:
    """Vertices of the dual polytope found by HiGHS as needed, each with primal solutions that certify it.

    A vertex :math:`\\lambda` is optimal for :math:`y` when some primal point
    :math:`(\\eta, \\delta)` with :math:`\\eta = \\lambda'y` satisfies every
    moment. The candidates are the point fixed by the binding moments (a
    vertex with :math:`k+1` of them) and the primal solutions of the programs
    that found the vertex; a certified :math:`y` needs no program.
    """

    def __init__(self, sd: np.ndarray, x: np.ndarray) -> None:
        self.w = np.column_stack([sd, x])
        self.vertices: list[np.ndarray] = []
        self.deltas: list[list[np.ndarray]] = []

    def solve(self, y: np.ndarray) -> int:
        """Solve for one ``y`` (HiGHS dual simplex on the primal); the index of its optimal vertex."""
        k1 = self.w.shape[1]
        res = optimize.linprog(
            np.eye(k1)[0], A_ub=-self.w, b_ub=-y, bounds=[(None, None)] * k1, method="highs-ds"
        )
        if res.status == 3:
            raise _UnboundedProgram
        if res.status != 0:
            raise ArithmeticError(f"ARP linear program: expected an optimum, HiGHS says {res.message}")
        vertex = np.clip(-res.ineqlin.marginals, 0.0, None)
        for j, known in enumerate(self.vertices):
            if np.allclose(known, vertex, rtol=1e-9, atol=1e-12 * float(np.abs(vertex).max())):
                self.deltas[j].append(res.x[1:])
                return j
        self.vertices.append(vertex)
        self.deltas.append([res.x[1:]])
        return len(self.vertices) - 1

    def certified(self, j: int, ys: np.ndarray) -> np.ndarray:
        """Columns of ``ys`` for which vertex ``j`` is certainly optimal."""
        vertex = self.vertices[j]
        tol = 1e-10 * (float(np.abs(ys).max()) + 1.0)
        # stored primal points: y - X delta <= eta sd with eta = vertex'y
        stored = self.w[:, 1:] @ np.stack(self.deltas[j], axis=1)
        eta_sd = self.w[:, :1] * (vertex @ ys)[None, :]
        slack = ys[:, :, None] - stored[:, None, :] - eta_sd[:, :, None]
        ok = np.any(np.all(slack <= tol, axis=0), axis=1)
        support = np.flatnonzero(vertex > _TOL_LAMBDA * float(np.abs(vertex).max()))
        if support.size == self.w.shape[1]:  # the point fixed by the binding moments
            point = np.linalg.solve(self.w[support], ys[support])
            ok |= np.all(ys - self.w @ point <= tol, axis=0)
        return ok

    def lower_bounds(self, ys: np.ndarray) -> np.ndarray:
        """:math:`\\eta \\ge \\max \\lambda'y` over the known vertices (dual feasible points)."""
        if not self.vertices:
            return np.full(ys.shape[1], -np.inf)
        return (np.array(self.vertices) @ ys).max(axis=0)

    def upper_bounds(self, ys: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        """:math:`\\eta \\le \\max_j (y_j - x_j'\\delta)/sd_j` at the best of the primal points ``deltas`` (columns)."""
        sd, fitted = self.w[:, 0], self.w[:, 1:] @ deltas
        best = np.full(ys.shape[1], np.inf)
        for start in range(0, fitted.shape[1], 64):
            block = fitted[:, start : start + 64]
            values = ((ys[:, :, None] - block[:, None, :]) / sd[:, None, None]).max(axis=0)
            best = np.minimum(best, values.min(axis=1))
        return best

    def upper_quantile(self, ys: np.ndarray, q: float) -> float:
        """Quantile ``q`` (type 7) of :math:`\\eta` over the columns, solving only those that can reach the top.

        The quantile needs the largest ``n - floor((n-1) q)`` values; a column
        whose upper bound (from the primal points found so far) is below the
        smallest of them, once known, cannot change it.
        """
        n = ys.shape[1]
        h = (n - 1) * q
        low = int(np.floor(h))
        top = n - low
        exact = np.full(n, np.nan)
        upper = self.upper_bounds(ys, np.column_stack([np.zeros(self.w.shape[1] - 1), *self._all_deltas()]))
        seen = len(self._all_deltas())
        while True:
            known = self._all_deltas()
            if len(known) > seen:
                upper = np.minimum(upper, self.upper_bounds(ys, np.column_stack(known[seen:])))
                seen = len(known)
            open_ = np.isnan(exact)
            if n - int(open_.sum()) >= top:
                threshold = np.sort(exact[~open_])[::-1][top - 1]
                open_ &= upper > threshold
            if not open_.any():
                break
            i = int(np.flatnonzero(open_)[np.argmax(upper[open_])])
            exact[i] = self.maximum(ys[:, [i]])[0][0]
            upper[i] = exact[i]
        largest = np.sort(exact[~np.isnan(exact)])[::-1]
        a_low = largest[top - 1]
        a_high = largest[top - 2] if top >= 2 else a_low
        return float(a_low + (h - low) * (a_high - a_low))

    def _all_deltas(self) -> list[np.ndarray]:
        return [d for ds in self.deltas for d in ds]

    def maximum(self, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:math:`\\eta` and an optimal vertex for each column of ``ys``."""
        n = ys.shape[1]
        index = np.full(n, -1)
        while (index < 0).any():
            cols = np.flatnonzero(index < 0)
            if self.vertices:
                best = np.argmax(np.array(self.vertices) @ ys[:, cols], axis=0)
                for j in np.unique(best):
                    mine = cols[best == j]
                    index[mine[self.certified(int(j), ys[:, mine])]] = j
                cols = np.flatnonzero(index < 0)
                if cols.size == 0:
                    break
            index[cols[0]] = self.solve(ys[:, cols[0]])
        lam = np.array(self.vertices)[index]
        return np.einsum("ij,ji->i", lam, ys), lam

    def edges(self, s_t: np.ndarray, b: np.ndarray, start: np.ndarray) -> np.ndarray:
        """Edges of :math:`\\{c: \\max_\\lambda \\lambda'(s + bc) = c\\}` on the side of R's brackets ``start``.

        One edge per column of ``s_t``; all of ``start`` have one sign. The
        edge over the known vertices lies at or beyond the true one; it is the
        true edge once the vertex attaining it is certified there, or once the
        program solved there finds nothing larger; otherwise that program
        adds a vertex. If R's bracket is inside the set the edge is infinite,
        as in R.
        """
        side = float(np.sign(start[0]))
        out = np.full(start.size, np.nan)
        for _ in range(100 * start.size + 100):
            todo = np.flatnonzero(np.isnan(out))
            if todo.size == 0:
                return out
            lam = np.array(self.vertices)
            slope, level = 1.0 - lam @ b, lam @ s_t[:, todo]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = level / slope[:, None]
            if side > 0:
                c = np.minimum(np.where(slope[:, None] < -1e-12, ratio, np.inf).min(axis=0), start[todo])
            else:
                c = np.maximum(np.where(slope[:, None] > 1e-12, ratio, -np.inf).max(axis=0), start[todo])
            ys = s_t[:, todo] + b[:, None] * c[None, :]
            best = np.argmax(lam @ ys, axis=0)
            done = np.zeros(todo.size, dtype=bool)
            for j in np.unique(best):
                mine = np.flatnonzero(best == j)
                done[mine] = self.certified(int(j), ys[:, mine])
            if not done.all():
                i = int(np.flatnonzero(~done)[0])
                j = self.solve(ys[:, i])
                done[i] = float(self.vertices[j] @ ys[:, i]) <= c[i] + 1e-9 * (abs(c[i]) + 1.0)
            out[todo[done]] = np.where(c[done] == start[todo[done]], side * np.inf, c[done])
        raise ArithmeticError("ARP truncation: no edge found")


def _conditional_rejects(
    polytope: _DualPolytope,
    gamma: np.ndarray,
    sigma_y: np.ndarray,
    ys: np.ndarray,
    eta: np.ndarray,
    lf_cv: float,
    mod_size: float,
    truncate_at_lf: bool,
) -> np.ndarray:
    """Second stage of the hybrid test for grid points sharing the optimal dual vertex ``gamma``."""
    x = polytope.x
    k = x.shape[1]
    binding = gamma > _TOL_LAMBDA
    x_b = x[binding]
    full_rank = k == 0 or (x_b.shape[0] > 0 and np.linalg.matrix_rank(x_b) == min(x_b.shape))
    var_b = float(gamma @ sigma_y @ gamma)
    if int(binding.sum()) == k + 1 and full_rank:
        vlo, vup = _truncation_primal(gamma, binding, x, polytope.sd, sigma_y, ys, var_b)
    else:
        if abs(var_b) < np.finfo(float).eps:
            return eta > 0
        vlo, vup = _r_bracket(*polytope.truncation(gamma, sigma_y, ys, var_b), eta, np.sqrt(var_b))
    sigma_b = np.sqrt(var_b)
    if truncate_at_lf:
        vup = np.minimum(vup, lf_cv)
    zlo, zup, stat = vlo / sigma_b, vup / sigma_b, eta / sigma_b
    inside = (zlo <= stat) & (stat <= zup)
    cval = np.maximum(0.0, _truncnorm_ppf(1.0 - mod_size, zlo, zup))
    return inside & (stat > cval)


def _truncation_primal(
    gamma: np.ndarray,
    binding: np.ndarray,
    x: np.ndarray,
    sd: np.ndarray,
    sigma_y: np.ndarray,
    ys: np.ndarray,
    var_b: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Truncation points given the binding moments (ARP's primal approach)."""
    w = np.column_stack([sd, x])
    inv_b = np.linalg.inv(w[binding])
    m = sd.size
    select_b = np.eye(m)[binding]
    gamma_b = w[~binding] @ inv_b @ select_b - np.eye(m)[~binding]
    rho = gamma_b @ sigma_y @ gamma / var_b
    bound = (-(gamma_b @ ys)) / rho[:, None] + (gamma @ ys)[None, :]
    n = ys.shape[1]
    vlo = bound[rho > 0].max(axis=0) if np.any(rho > 0) else np.full(n, -np.inf)
    vup = bound[rho < 0].min(axis=0) if np.any(rho < 0) else np.full(n, np.inf)
    return vlo, vup


def _r_bracket(
    lower: np.ndarray, upper: np.ndarray, eta: np.ndarray, sigma_b: float
) -> tuple[np.ndarray, np.ndarray]:
    """R's dual approach bisects from :math:`\\min(-100, \\eta - 20\\sigma_B)` and
    :math:`\\max(100, \\eta + 20\\sigma_B)`; an edge beyond them is infinite."""
    lower = np.where(lower < np.minimum(-100.0, eta - 20 * sigma_b), -np.inf, np.minimum(lower, eta))
    upper = np.where(upper > np.maximum(100.0, eta + 20 * sigma_b), np.inf, np.maximum(upper, eta))
    return lower, upper


def _truncnorm_ppf(p: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Quantile ``p`` of the standard normal truncated to ``[lo, hi]``, stable in the tails."""
    lo, hi = np.broadcast_arrays(np.asarray(lo, dtype=float), np.asarray(hi, dtype=float))
    out = np.empty(lo.shape)
    upper = lo > 0
    lower = hi < 0
    mid = ~(upper | lower)
    with np.errstate(divide="ignore"):
        # upper tail: survival Q(x) = Q(hi) + (1 - p)(Q(lo) - Q(hi)), in logs
        lq_lo, lq_hi = special.log_ndtr(-lo[upper]), special.log_ndtr(-hi[upper])
        out[upper] = -special.ndtri_exp(lq_lo + np.log((1 - p) + p * np.exp(lq_hi - lq_lo)))
        lp_lo, lp_hi = special.log_ndtr(lo[lower]), special.log_ndtr(hi[lower])
        out[lower] = special.ndtri_exp(lp_hi + np.log(p + (1 - p) * np.exp(lp_lo - lp_hi)))
    c_lo, c_hi = special.ndtr(lo[mid]), special.ndtr(hi[mid])
    out[mid] = special.ndtri(c_lo + p * (c_hi - c_lo))
    return np.clip(out, lo, hi)


# --------------------------------------------------------------------------
# R's random normals (Mersenne Twister, set.seed, inversion)
# --------------------------------------------------------------------------


def _r_rnorm(n: int, seed: int) -> np.ndarray:
    """``set.seed(seed); rnorm(n)`` as R computes it (default RNG kinds)."""
    x = seed & 0xFFFFFFFF
    for _ in range(50):
        x = (69069 * x + 1) & 0xFFFFFFFF
    key = np.empty(625, dtype=np.uint32)
    for j in range(625):
        x = (69069 * x + 1) & 0xFFFFFFFF
        key[j] = x
    bitgen = np.random.MT19937()
    bitgen.state = {"bit_generator": "MT19937", "state": {"key": key[1:], "pos": 624}}
    raw = bitgen.random_raw(2 * n).astype(float) * 2.3283064365386963e-10
    big = 134217728.0
    u = np.floor(big * raw[0::2]) + raw[1::2]
    return special.ndtri(u / big)


def _r_rmvnorm(n: int, sigma: np.ndarray, seed: int) -> np.ndarray:
    """``set.seed(seed); mvtnorm::rmvnorm(n, sigma = sigma)`` (eigen square root)."""
    values, vectors = np.linalg.eigh(sigma)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    z = _r_rnorm(n * sigma.shape[0], seed).reshape(n, sigma.shape[0])
    return z @ root


# --------------------------------------------------------------------------
# Smoothness: the optimal fixed-length confidence interval
# --------------------------------------------------------------------------


def _flci(p: _Problem, m: float) -> tuple[float, float, np.ndarray, float]:
    """FLCI bounds, the estimator's weights on ``betahat`` and its half-length."""
    frontier = _FlciFrontier.build(p)
    weights, half = frontier.optimum(m, p.alpha)
    centre = float(weights @ p.betahat)
    return centre - half, centre + half, weights, half


@dataclass(frozen=True)
class _FlciFrontier:
    """Worst-case bias against variance of the affine estimators of :math:`l'\\tau_{post}`.

    An estimator :math:`v_{pre}'\\hat\\beta_{pre} + l'\\hat\\beta_{post}` has
    finite worst-case bias over :math:`\\Delta^{SD}(M)` only if its
    pre-period weights are second differences of a vector :math:`u` with
    :math:`u_K = \\sum_t t\\,l_t`; the bias is then
    :math:`M(c_0 + \\sum_k |u_k|)` and the variance a quadratic in
    :math:`u`. The least variance for each bound on the bias is therefore a
    lasso in the free :math:`u_1, \\dots, u_{K-1}`; its exact homotopy path
    is the frontier R traces point by point (``.findWorstCaseBiasGivenH``).
    """

    quad: np.ndarray  # variance = u'Hu + 2g'u + const over the free u
    lin: np.ndarray
    const: float
    to_weights: np.ndarray  # pre-period weights = to_weights @ u_free + offset
    offset: np.ndarray
    bias_const: float
    l_vec: np.ndarray
    segments: tuple[tuple[float, float, np.ndarray, np.ndarray], ...]

    @classmethod
    def build(cls, p: _Problem) -> _FlciFrontier:
        k, t = p.num_pre, p.num_post
        l_vec = p.l_vec
        c = float(np.arange(1, t + 1) @ l_vec)
        diff = np.eye(k) - np.eye(k, k=-1)
        g2 = diff @ diff  # pre-period weights from the cumulative sums u
        to_w, offset = g2[:, :-1], g2[:, -1] * c
        s_pre = p.sigma[:k, :k]
        s_cross = p.sigma[:k, k:] @ l_vec
        quad = to_w.T @ s_pre @ to_w
        lin = to_w.T @ (s_pre @ offset + s_cross)
        const = float(offset @ s_pre @ offset + 2 * offset @ s_cross + l_vec @ p.sigma[k:, k:] @ l_vec)
        bias_const = sum(
            abs(float(np.arange(1, s + 1) @ l_vec[t - s :])) for s in range(1, t + 1)
        ) - c + abs(c)
        segments = _lasso_path(2.0 * quad, 2.0 * lin)
        return cls(quad, lin, const, to_w, offset, bias_const, l_vec, segments)

    def _at(self, u: np.ndarray) -> tuple[float, float]:
        var = float(u @ self.quad @ u + 2 * self.lin @ u + self.const)
        return float(np.sqrt(max(var, 0.0))), self.bias_const + float(np.abs(u).sum())

    def optimum(self, m: float, alpha: float) -> tuple[np.ndarray, float]:
        """Weights on ``betahat`` and half-length of the shortest FLCI at smoothness ``m``."""

        def half_length(u: np.ndarray) -> float:
            sd, bias = self._at(u)
            return sd * _folded_normal_quantile(1.0 - alpha, m * bias / sd)

        best_u = np.zeros(self.quad.shape[0])
        best = half_length(best_u)
        for lam_hi, lam_lo, alpha_a, beta_a in self.segments:
            def along(lam: float, a: np.ndarray = alpha_a, b: np.ndarray = beta_a) -> float:
                return half_length(a + lam * b)

            hi = lam_hi if np.isfinite(lam_hi) else lam_lo
            for lam in (lam_lo, hi):
                val = along(lam)
                if val < best:
                    best, best_u = val, alpha_a + lam * beta_a
            if hi > lam_lo:
                res = optimize.minimize_scalar(
                    along, bounds=(lam_lo, hi), method="bounded",
                    options={"xatol": 1e-12 * max(hi, 1e-300)},
                )
                if res.fun < best:
                    best, best_u = float(res.fun), alpha_a + res.x * beta_a
        pre = self.to_weights @ best_u + self.offset
        return np.concatenate([pre, self.l_vec]), best


def _lasso_path(
    quad: np.ndarray, lin: np.ndarray
) -> tuple[tuple[float, float, np.ndarray, np.ndarray], ...]:
    """Exact path of :math:`\\min_u \\tfrac12 u'Pu + q'u + \\lambda\\|u\\|_1` for all :math:`\\lambda \\ge 0`.

    Returns segments ``(lambda_high, lambda_low, a, b)`` on which the
    solution is :math:`u = a + \\lambda b` (full-length vectors).
    """
    n = lin.size
    if n == 0:
        return ()
    active: list[int] = []
    signs: dict[int, float] = {}
    lam_cur = float(np.abs(lin).max())
    segments = [(np.inf, lam_cur, np.zeros(n), np.zeros(n))]
    j0 = int(np.argmax(np.abs(lin)))
    if lam_cur <= 0.0:
        return tuple(segments)
    active.append(j0)
    signs[j0] = float(np.sign(-lin[j0]))
    for _ in range(50 * n):
        idx = np.array(active)
        s = np.array([signs[j] for j in active])
        p_aa = quad[np.ix_(idx, idx)]
        a_act = -np.linalg.solve(p_aa, lin[idx])
        b_act = -np.linalg.solve(p_aa, s)
        a_full, b_full = np.zeros(n), np.zeros(n)
        a_full[idx], b_full[idx] = a_act, b_act
        inactive = np.setdiff1d(np.arange(n), idx)
        events: list[tuple[float, int, float]] = []
        for pos, j in enumerate(active):
            if b_act[pos] != 0:
                lam = -a_act[pos] / b_act[pos]
                if 0 < lam < lam_cur * (1 - 1e-12):
                    events.append((lam, j, 0.0))
        corr_a = -(quad[inactive][:, idx] @ a_act + lin[inactive])
        corr_b = -(quad[inactive][:, idx] @ b_act)
        for j, ca, cb in zip(inactive, corr_a, corr_b):
            for sgn in (1.0, -1.0):
                den = sgn - cb
                if den != 0:
                    lam = ca / den
                    if 0 < lam < lam_cur * (1 - 1e-12):
                        events.append((lam, int(j), sgn))
        if not events:
            segments.append((lam_cur, 0.0, a_full, b_full))
            break
        lam_next, j, sgn = max(events)
        segments.append((lam_cur, lam_next, a_full, b_full))
        lam_cur = lam_next
        if sgn == 0.0:
            active.remove(j)
            signs.pop(j)
        else:
            active.append(j)
            signs[j] = sgn
        if not active:
            segments.append((lam_cur, 0.0, np.zeros(n), np.zeros(n)))
            break
    return tuple(segments)


def _folded_normal_quantile(p: float, mu: float) -> float:
    """Quantile ``p`` of :math:`|Z + \\mu|`, :math:`Z \\sim N(0, 1)` (R simulates it)."""
    mu = abs(mu)

    def cdf_gap(x: float) -> float:
        return float(special.ndtr(x - mu) - special.ndtr(-x - mu)) - p

    lo = max(0.0, mu + float(special.ndtri(p)) - 1.0)
    hi = mu + float(special.ndtri(0.5 + p / 2.0)) + 1.0
    return float(optimize.brentq(cdf_gap, lo, hi, xtol=1e-14, rtol=1e-15))
