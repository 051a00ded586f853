r"""Wild cluster bootstrap and randomization inference on any panel, from the demeaned rows.

The general path's counterpart of the cluster x period algebra of
:mod:`~pipeline.did.inference.bootstrap` and
:mod:`~pipeline.did.inference.randomization`: unbalanced panels, units not
nested in clusters, any fixed effects. Everything starts from the residual
maker :math:`M` of the fixed effects (alternating projections to machine
precision, :func:`demean`), with :math:`\tilde y = My`, :math:`\tilde d = MD`.

*Wild bootstrap.* With the null :math:`\beta = b_0` imposed, :math:`u = \tilde y - b_0\tilde d`
and :math:`y^* = y - u + w_g u`. Because :math:`\tilde d'M = \tilde d'`,

.. math::

    \beta^* - b_0 = \frac{\sum_h w_h (P_h - b_0 Q_h)}{\sum_h Q_h},\qquad
    s^*_g = \sum_h w_h\,\tilde d_g'\,[M(u\,1_h)]_g - (\beta^* - b_0)\,Q_g

with :math:`P_h = \tilde d_h'\tilde y_h`, :math:`Q_h = \tilde d_h'\tilde d_h`. The (G, G)
matrices :math:`K^y_{gh} = \tilde d_g'[M(\tilde y 1_h)]_g` and :math:`K^d` (the same with
:math:`\tilde d`) are all the draws need: they are handed to the bootstrap's own
per-draw code as its ``Cy = diag(P) - K^y`` and ``Cd = diag(Q) - K^d``, so the
p-values, the WCR interval by test inversion and the WCU percentile-t interval
are those of the aggregated path (on a balanced panel the two agree to rounding).

*Randomization.* Each assignment gives cluster-period treatments; its demeaned
regressor :math:`\tilde d_a` gives per assignment five numbers (numerators and
score cross-products in :math:`\tilde y` and :math:`\tilde d_{obs}`) from which
:math:`t_a(\beta_0)` follows for every constant effect :math:`\beta_0`, so the p-value
and the inverted interval use the randomization module's own counting and search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from pipeline.did.inference._twfe_algebra import TwfeFit, t_pvalue
from pipeline.did.inference.bootstrap import (
    WEIGHT_TYPES,
    BootstrapResult,
    _draw_coefficients,
    _Pre,
    _result,
    _weights,
    all_sign_vectors,
)
from pipeline.did.inference.randomization import (
    _RTOL,
    RandomizationResult,
    _ExtremeCounter,
    _invert,
    _t_at,
    enumerate_assignments,
    make_design,
    sample_assignments,
)

_TOL = 1e-13
_MAX_ITER = 100_000
_BATCH = 512  # assignments demeaned together


def demean(X: np.ndarray, factors: Sequence[np.ndarray], *, tol: float = _TOL) -> np.ndarray:
    """Residuals of the columns of X (N,) or (N, K) on the dummies of ``factors`` (alternating projections).

    Each factor is an (N,) integer code 0..L-1. Exact in one sweep for two
    factors of a balanced panel; otherwise swept until no entry moves by more
    than ``tol`` times the largest absolute entry.
    """
    X = np.array(X, dtype=float)
    one = X.ndim == 1
    if one:
        X = X[:, None]
    N = X.shape[0]
    ops = []
    for f in factors:
        f = np.asarray(f, dtype=np.int64)
        F = sparse.csr_matrix((np.ones(N), (np.arange(N), f)), shape=(N, int(f.max()) + 1))
        counts = np.asarray(F.sum(axis=0)).ravel()
        ops.append((F, F.T.tocsr(), counts))
    scale = max(float(np.abs(X).max(initial=0.0)), 1.0)
    for _ in range(_MAX_ITER):
        moved = 0.0
        for F, Ft, counts in ops:
            means = (Ft @ X) / counts[:, None]
            step = F @ means
            X -= step
            moved = max(moved, float(np.abs(step).max(initial=0.0)))
        if len(ops) <= 1 or moved <= tol * scale:
            break
    return X[:, 0] if one else X


@dataclass(frozen=True)
class Rows:
    """The demeaned rows of a one-regressor fixed-effects regression clustered by ``g``."""

    y: np.ndarray  # (N,) My
    d: np.ndarray  # (N,) MD
    g: np.ndarray  # (N,) cluster codes 0..G-1
    t: np.ndarray  # (N,) period codes 0..T-1
    factors: tuple[np.ndarray, ...]
    c: float  # small-sample factor of the CRV1 variance

    @property
    def n_clusters(self) -> int:
        """G."""
        return int(self.g.max()) + 1

    def fit(self, *, null: float = 0.0) -> TwfeFit:
        """beta, CRV1 standard error and t(G-1) statistic of the regression."""
        G = self.n_clusters
        Q = np.bincount(self.g, self.d * self.d, minlength=G)
        P = np.bincount(self.g, self.d * self.y, minlength=G)
        beta = P.sum() / Q.sum()
        scores = P - beta * Q
        se = float(np.sqrt(self.c * np.sum(scores**2)) / Q.sum())
        t = (beta - null) / se
        return TwfeFit(float(beta), se, float(t), float(t_pvalue(t, G - 1)), scores, G, float(null))


def rows(y: np.ndarray, D: np.ndarray, factors: Sequence[np.ndarray], g: np.ndarray, t: np.ndarray,
         c: float) -> Rows:
    """Demean outcome and treatment once; ``g`` and ``t`` are cluster and period codes from 0."""
    yd = demean(np.column_stack([y, D]), factors)
    return Rows(yd[:, 0], yd[:, 1], np.asarray(g, np.int64), np.asarray(t, np.int64), tuple(factors), float(c))


def _pre(r: Rows) -> _Pre:
    """The bootstrap's per-cluster precomputation from the rows (see the module docstring)."""
    G = r.n_clusters
    N = len(r.y)
    ind = sparse.csr_matrix((np.ones(N), (np.arange(N), r.g)), shape=(N, G))
    P = np.bincount(r.g, r.d * r.y, minlength=G)
    Q = np.bincount(r.g, r.d * r.d, minlength=G)
    My = demean(ind.multiply(r.y[:, None]).toarray(), r.factors)  # column h: M(y~ 1_h)
    Md = demean(ind.multiply(r.d[:, None]).toarray(), r.factors)
    dg = ind.multiply(r.d[:, None]).T.tocsr()  # (G, N): row g is d~ on g's rows
    Ky, Kd = np.asarray(dg @ My), np.asarray(dg @ Md)
    return _Pre(P, Q, np.diag(P) - Ky, np.diag(Q) - Kd, r.c)


def wild_bootstrap(r: Rows, *, null: float = 0.0, draws: int = 9_999, weights: str = "webb",
                   restricted: bool = True, alpha: float = 0.05, seed: int = 0, ci: bool = True) -> BootstrapResult:
    """Wild cluster bootstrap-t of H0: beta = null on the rows (WCR or WCU), as the aggregated path computes it."""
    if weights not in WEIGHT_TYPES:
        raise ValueError(f"wild_bootstrap: weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    G = r.n_clusters
    exact = weights == "rademacher" and 2**G <= draws
    W = all_sign_vectors(G) if exact else _weights(weights, G, int(draws), seed)
    pre = _pre(r)
    coef = _draw_coefficients(pre, W)
    return _result(coef, pre.c, r.fit(), null=null, weights=weights, restricted=restricted, alpha=alpha, ci=ci,
                   exact=exact)


def cluster_paths(r: Rows, D: np.ndarray) -> np.ndarray:
    """(G, T) treatment of each cluster in each period; raise unless it is constant within cluster x period
    and defined for every period of every treated cluster."""
    G, T = r.n_clusters, int(r.t.max()) + 1
    cell = r.g * T + r.t
    lo = np.full(G * T, np.inf)
    hi = np.full(G * T, -np.inf)
    np.minimum.at(lo, cell, D)
    np.maximum.at(hi, cell, D)
    seen = np.isfinite(lo)
    if np.any(lo[seen] != hi[seen]):
        raise ValueError("randomization: treatment must be constant within cluster x period")
    treat = np.where(seen, lo, 0.0).reshape(G, T)
    treated = np.any(treat != 0, axis=1)
    if np.any(~seen.reshape(G, T)[treated]):
        raise ValueError("randomization: every treated cluster must be observed in every period "
                         "(its path is what is reassigned)")
    return treat


def _coefficients(r: Rows, treats: np.ndarray) -> np.ndarray:
    """[numY, numZ, sYY, sYZ, sZZ] of each assignment (R, G, T) against y~ and the observed d~."""
    G = r.n_clusters
    out = np.empty((5, len(treats)))
    for start in range(0, len(treats), _BATCH):
        tr = treats[start:start + _BATCH]
        Da = demean(tr[:, r.g, r.t].T, r.factors)  # (N, B)
        num_y, num_z = r.y @ Da, r.d @ Da
        den = np.einsum("nb,nb->b", Da, Da)
        B = Da.shape[1]
        PY = np.zeros((G, B))
        PZ = np.zeros((G, B))
        QQ = np.zeros((G, B))
        np.add.at(PY, r.g, Da * r.y[:, None])
        np.add.at(PZ, r.g, Da * r.d[:, None])
        np.add.at(QQ, r.g, Da * Da)
        sY = PY - (num_y / den) * QQ
        sZ = PZ - (num_z / den) * QQ
        cols = slice(start, start + B)
        out[0, cols], out[1, cols] = num_y, num_z
        out[2, cols] = np.einsum("gb,gb->b", sY, sY)
        out[3, cols] = np.einsum("gb,gb->b", sY, sZ)
        out[4, cols] = np.einsum("gb,gb->b", sZ, sZ)
    return out


def treatments_of(assign: np.ndarray, paths: np.ndarray, slot: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(B, G, T) treatments of assignments (B, M): slot m's cluster follows ``paths[slot[m]]``."""
    out = np.zeros((len(assign),) + shape)
    rows_ = np.repeat(np.arange(len(assign)), assign.shape[1])
    out[rows_, assign.ravel()] = paths[np.tile(slot, len(assign))]
    return out


def randomization(r: Rows, treat: np.ndarray, *, assignments: np.ndarray | None = None, null: float = 0.0,
                  max_assignments: int = 20_000, draws: int = 9_999, seed: int = 0, alpha: float = 0.05,
                  ci: bool = True) -> RandomizationResult:
    """Randomization test of H0: effect = null with |t| (CRV1) as statistic, and its inverted interval.

    ``treat`` is the observed (G, T) cluster treatment. Without ``assignments``
    the design's paths are reassigned to distinct clusters: all assignments when
    there are at most ``max_assignments``, else ``draws`` seeded ones plus the
    observed. Explicit ``assignments`` (R, G, T) are taken as the whole
    randomization distribution (include the observed one).
    """
    G, T = treat.shape
    obs = _coefficients(r, treat[None])
    if assignments is not None:
        coef = _coefficients(r, np.asarray(assignments, dtype=float))
        exact, total = True, coef.shape[1]
    else:
        paths = [treat[g] for g in np.nonzero(np.any(treat != 0, axis=1))[0]]
        design = make_design(paths, T)
        total = design.n_assignments(G)
        exact = total <= max_assignments
        chunks = enumerate_assignments(G, design) if exact else sample_assignments(G, design, int(draws), seed)
        coef = np.concatenate([_coefficients(r, treatments_of(a, design.paths, design.slot_path, (G, T)))
                               for a in chunks], axis=1)
    c = r.c

    def p_at(beta0: float, counter: _ExtremeCounter | None = None) -> float:
        t0 = abs(_t_at(obs, beta0, c)[0]) * (1 - _RTOL)
        k = counter.count(beta0, t0) if counter is not None else int(np.sum(np.abs(_t_at(coef, beta0, c)) >= t0))
        return k / coef.shape[1] if exact else (1 + k) / (coef.shape[1] + 1)

    p = p_at(null)
    lo = hi = np.nan
    if ci:
        counter = _ExtremeCounter(coef, c)
        fit = r.fit()
        lo, hi = _invert(lambda b: p_at(b, counter), fit.beta, fit.se, alpha, rtol=1e-4)
    n = coef.shape[1] if exact else coef.shape[1] + 1
    return RandomizationResult(float(p), float(_t_at(obs, null, c)[0]), int(n), bool(exact), float(lo), float(hi))
