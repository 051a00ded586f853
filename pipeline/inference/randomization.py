"""Randomization inference: reassign the design's treatment paths to clusters.

An assignment gives each of the design's M treatment paths to a distinct cluster;
assignments that differ only by permuting identical paths are the same.  The
statistic is |t| of the TWFE coefficient with its CRV1 standard error, and

.. math::

    p = \\frac{\\#\\{a : |t_a| \\ge |t_{obs}|\\}}{\\#\\text{assignments}}

over all assignments (the observed one included) when there are at most
``max_assignments``, otherwise over ``draws`` seeded random assignments plus the
observed one.  The pilot design (five identical two-year paths and one one-year
path among 31 municipalities) has C(31,5) * C(26,1) = 4,417,686 assignments and is
enumerated exactly.

Why it is fast: with :math:`q_k` path k centred over periods and
:math:`\\pi_k` the share of all units in clusters given path k, an assignment's
demeaned treatment is :math:`\\tilde d_{gt} = q_{k(g)}(t) - \\sum_k \\pi_k q_k(t)`.
So :math:`\\hat\\beta`, every cluster score and :math:`\\sum_g s_g^2` are functions of
:math:`Y_{gk} = \\sum_t q_k(t) \\tilde Y_{gt}`, :math:`H_{kl} = q_k \\cdot q_l`, the units
and :math:`\\pi`; the untreated clusters enter only through totals over all clusters
minus the treated ones.  The treated clusters enter through sums of per-(cluster,
path) features, so exact enumeration computes the features of every combination of
the largest group of identical paths once, adds the other groups' by broadcasting
and masks overlapping sets (``_FeatureEngine``): O(features) per assignment, about
3 s for the pilot's 4.4 M assignments (G = 31, T = 60; 2 cores).  Sampled
assignments are evaluated slot by slot (``_Engine``), which is the reference the
tests hold the enumeration to.

The interval inverts the test of a constant effect :math:`\\beta_0` (sums
:math:`S - \\beta_0 n D_{obs}`): per assignment the numerator of t is affine and
:math:`\\sum_g s_g^2` quadratic in :math:`\\beta_0`, so five numbers per assignment are
stored once (40 bytes; 177 MB for the pilot) and each :math:`\\beta_0` costs a pass over
them.  The interval is therefore computed on the same (exact or sampled) set of
assignments as the p-value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.inference._twfe_algebra import crv1_constant, demean_sums, demean_treatment, twfe_fit
from pipeline.inference.bootstrap import _invert

if TYPE_CHECKING:  # the estimation package is imported lazily: it may be mid-edit
    from pipeline.estimation.cells import Cells

_CHUNK = 200_000
_RTOL = 1e-10  # |t_a| >= |t_obs| up to rounding (the observed assignment is one of the a)


@dataclass(frozen=True)
class RandomizationResult:
    """Randomization-inference p-value of H0: effect = null, and its inverted interval."""

    p_value: float
    t_stat: float
    n_assignments: int
    exact: bool
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Design:
    """Distinct treatment paths and how many clusters get each."""

    paths: np.ndarray  # (K, T) distinct 0/1 paths, in order of first appearance
    counts: np.ndarray  # (K,) clusters per path

    @property
    def slot_path(self) -> np.ndarray:
        """(M,) path index of each treated slot, slots grouped by path."""
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def n_assignments(self, n_clusters: int) -> int:
        """Multinomial count G! / (prod m_k! (G - M)!)."""
        total, left = 1, n_clusters
        for m in self.counts:
            total *= math.comb(left, int(m))
            left -= int(m)
        return total


def make_design(paths: Sequence[np.ndarray], n_periods: int) -> Design:
    """Group identical paths; validates shapes."""
    distinct: list[np.ndarray] = []
    counts: list[int] = []
    for p in paths:
        p = np.asarray(p, dtype=float)
        if p.shape != (n_periods,):
            raise ValueError(f"randomization: expected each path of shape ({n_periods},), found {p.shape}")
        for k, q in enumerate(distinct):
            if np.array_equal(p, q):
                counts[k] += 1
                break
        else:
            distinct.append(p)
            counts.append(1)
    if not distinct:
        raise ValueError("randomization: expected at least one treatment path, found none")
    return Design(np.array(distinct), np.array(counts, dtype=np.int64))


def observed_assignment(treat: np.ndarray, design: Design) -> np.ndarray:
    """(M,) cluster of each slot in the observed treatment (sorted within path)."""
    treat = np.asarray(treat, dtype=float)
    idx = []
    used = np.zeros(treat.shape[0], dtype=bool)
    for k, (p, m) in enumerate(zip(design.paths, design.counts)):
        hit = np.flatnonzero(np.all(treat == p[None, :], axis=1))
        if len(hit) != m:
            raise ValueError(f"randomization: path {k} is given {m} times but {len(hit)} clusters follow it")
        used[hit] = True
        idx.extend(hit.tolist())
    stray = np.flatnonzero(~used & np.any(treat != 0, axis=1))
    if len(stray):
        raise ValueError(f"randomization: clusters {stray.tolist()} are treated but follow none of the paths")
    return np.array(idx, dtype=np.int64)


class _Engine:
    """Per-assignment t statistics from precomputed inner products."""

    def __init__(self, sums: np.ndarray, n: np.ndarray, design: Design, extra: Sequence[np.ndarray] = ()):
        n = np.asarray(n, dtype=float)
        G, T = sums.shape
        q = design.paths - design.paths.mean(axis=1, keepdims=True)
        Ytil = demean_sums(sums, n)
        self.n = n
        self.N = n.sum()
        self.H = q @ q.T
        self.Hdiag = np.diag(self.H).copy()
        self.slot = design.slot_path
        self.onehot = (self.slot[:, None] == np.arange(len(design.counts))[None, :]).astype(float)
        self.c = crv1_constant(G, T, self.N)
        self.Snn = float(np.sum(n * n))
        # "Y" matrices: outcome, and any extra (G,T) arrays (e.g. n * d~_obs for the CI)
        self.Ys = [Ytil @ q.T] + [np.asarray(e) @ q.T for e in extra]
        self.SYY = {(i, j): self.Ys[i].T @ self.Ys[j] for i in range(len(self.Ys)) for j in range(i, len(self.Ys))}
        self.SnY = [n @ Y for Y in self.Ys]

    def coefficients(self, idx: np.ndarray) -> tuple[list[np.ndarray], dict[tuple[int, int], np.ndarray]]:
        """Numerators (per Y) and cross sums of scores sum_g s_g(Y_i) s_g(Y_j), per assignment."""
        nI = self.n[idx]  # (B, M)
        Nk = nI @ self.onehot  # (B, K)
        pi = Nk / self.N
        Hpi = pi @ self.H
        rho = np.einsum("bk,bk->b", pi, Hpi)
        e = self.Hdiag[self.slot][None, :] - 2 * Hpi[:, self.slot] + rho[:, None]
        den = Nk @ self.Hdiag - self.N * rho
        b = nI * e
        bb = np.einsum("bm,bm->b", b, b) + rho * rho * (self.Snn - np.einsum("bm,bm->b", nI, nI))
        nums, a_t, piY, ab = [], [], [], []
        for i, Y in enumerate(self.Ys):
            own = Y[idx, self.slot[None, :]]  # (B, M)
            pY = np.einsum("bmk,bk->bm", Y[idx], pi)
            a = own - pY
            nums.append(own.sum(axis=1))
            a_t.append(a)
            piY.append(pY)
            untreated_ab = -rho * (pi @ self.SnY[i] - np.einsum("bm,bm->b", nI, pY))
            ab.append(np.einsum("bm,bm->b", a, b) + untreated_ab)
        betas = [num / den for num in nums]
        ss = {}
        for (i, j), S in self.SYY.items():
            aa = np.einsum("bm,bm->b", a_t[i], a_t[j])
            aa += np.einsum("bk,kl,bl->b", pi, S, pi) - np.einsum("bm,bm->b", piY[i], piY[j])
            ss[(i, j)] = aa - betas[j] * ab[i] - betas[i] * ab[j] + betas[i] * betas[j] * bb
        return nums, ss

    def t_stats(self, idx: np.ndarray) -> np.ndarray:
        """CRV1 t against zero for each assignment (rows of idx)."""
        nums, ss = self.coefficients(idx)
        return nums[0] / np.sqrt(self.c * np.maximum(ss[(0, 0)], 0.0))


class _FeatureEngine:
    """Exact enumeration: the statistics of an assignment from additive per-slot features.

    Every quantity of :class:`_Engine` that sums over treated slots is a sum of
    per-(cluster, path) features, so the features of an assignment are the sum of
    its groups' features.  The largest group of identical paths is enumerated once
    over all clusters; the other groups' assignments are added by broadcasting and
    overlapping combinations are masked out.
    """

    def __init__(self, eng: _Engine):
        self.eng = eng
        K = eng.H.shape[0]
        R = len(eng.Ys)
        self.K, self.R = K, R
        self.pairs = list(eng.SYY)
        lay: dict[str, slice] = {}
        pos = 0

        def add(name: str, size: int) -> None:
            nonlocal pos
            lay[name] = slice(pos, pos + size)
            pos += size

        add("Nk", K)
        add("n2k", K)
        for i in range(R):
            add(f"num{i}", 1)
            add(f"nown{i}", K)
            add(f"nY{i}", K * K)
        for i, j in self.pairs:
            add(f"oo{i}{j}", 1)
            add(f"oY{i}{j}", K)
            add(f"oY{j}{i}", K)
        self.lay, self.F = lay, pos
        G = len(eng.n)
        n = eng.n
        phi = np.zeros((K, self.F, G))  # features of cluster g when given path k
        for k in range(K):
            f = phi[k]
            f[lay["Nk"].start + k] = n
            f[lay["n2k"].start + k] = n * n
            for i, Y in enumerate(eng.Ys):
                own = Y[:, k]
                f[lay[f"num{i}"].start] = own
                f[lay[f"nown{i}"].start + k] = n * own
                f[lay[f"nY{i}"].start + k * K : lay[f"nY{i}"].start + (k + 1) * K] = (n[:, None] * Y).T
            for i, j in self.pairs:
                oi, oj = eng.Ys[i][:, k], eng.Ys[j][:, k]
                f[lay[f"oo{i}{j}"].start] = oi * oj
                f[lay[f"oY{i}{j}"]] = (oi[:, None] * eng.Ys[j]).T
                f[lay[f"oY{j}{i}"]] = (oj[:, None] * eng.Ys[i]).T
        self.phi = phi

    def features(self, idx: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """(F, B) features of assignments idx (B, m) whose slots follow paths ``slot`` (m,)."""
        out = np.zeros((self.F, idx.shape[0]))
        for col, k in enumerate(slot):
            out += self.phi[k][:, idx[:, col]]
        return out

    def evaluate(self, Ft: np.ndarray) -> tuple[list[np.ndarray], dict[tuple[int, int], np.ndarray]]:
        """Numerators and cross sums of scores from features (F, B)."""
        eng, lay, K = self.eng, self.lay, self.K
        Nk = Ft[lay["Nk"]]
        pi = Nk / eng.N
        Hpi = eng.H @ pi
        rho = np.sum(pi * Hpi, axis=0)
        e = eng.Hdiag[:, None] - 2 * Hpi + rho
        den = eng.Hdiag @ Nk - eng.N * rho
        n2k = Ft[lay["n2k"]]
        bb = np.sum(e * e * n2k, axis=0) + rho * rho * (eng.Snn - n2k.sum(axis=0))
        nums, ab = [], []
        for i in range(self.R):
            nY = Ft[lay[f"nY{i}"]].reshape(K, K, -1)
            pinY = np.einsum("lb,klb->kb", pi, nY)  # per path k: pi . sum_{j in k} n_j Y_j
            ab_i = np.sum(e * (Ft[lay[f"nown{i}"]] - pinY), axis=0)
            ab_i -= rho * (eng.SnY[i] @ pi - pinY.sum(axis=0))
            nums.append(Ft[lay[f"num{i}"]][0])
            ab.append(ab_i)
        betas = [num / den for num in nums]
        ss = {}
        for i, j in self.pairs:
            aa = Ft[lay[f"oo{i}{j}"]][0] - np.sum(pi * Ft[lay[f"oY{i}{j}"]], axis=0)
            aa -= np.sum(pi * Ft[lay[f"oY{j}{i}"]], axis=0)
            aa += np.einsum("kb,kl,lb->b", pi, eng.SYY[(i, j)], pi)
            ss[(i, j)] = aa - betas[j] * ab[i] - betas[i] * ab[j] + betas[i] * betas[j] * bb
        return nums, ss

    def enumerate(self, design: Design, chunk: int = 1_000_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(features (F, B), valid mask (B,)) over all assignments, in blocks."""
        G = len(self.eng.n)
        inner = int(np.argmax([math.comb(G, int(m)) for m in design.counts]))
        m_in = int(design.counts[inner])
        comb = np.fromiter(
            itertools.chain.from_iterable(itertools.combinations(range(G), m_in)), dtype=np.int64
        ).reshape(-1, m_in)
        F_in = self.features(comb, np.full(m_in, inner))
        bits_in = np.bitwise_or.reduce(np.int64(1) << comb, axis=1)
        others = [k for k in range(len(design.counts)) if k != inner]
        if others:
            sub = Design(design.paths[others], design.counts[others])
            out_idx = np.concatenate(list(enumerate_assignments(G, sub)))
            slot = np.array(others)[sub.slot_path]
            F_out = self.features(out_idx, slot)
            bits_out = np.bitwise_or.reduce(np.int64(1) << out_idx, axis=1)
        else:
            F_out, bits_out = np.zeros((self.F, 1)), np.zeros(1, dtype=np.int64)
        block = max(1, chunk // len(comb))
        for s in range(0, len(bits_out), block):
            Fo, bo = F_out[:, s : s + block], bits_out[s : s + block]
            Ft = (F_in[:, None, :] + Fo[:, :, None]).reshape(self.F, -1)
            yield Ft, ((bits_in[None, :] & bo[:, None]) == 0).ravel()


class _ExtremeCounter:
    """Counts assignments with |t(beta0)| >= t0 in one pass of in-place products (no sqrt)."""

    def __init__(self, coef: np.ndarray, c: float):
        self.numY, self.numZ, self.sYY = coef[0], coef[1], coef[2]
        self.m2sYZ = -2.0 * coef[3]
        self.sZZ = coef[4]
        self.c = c
        self.num = np.empty_like(self.numY)
        self.ss = np.empty_like(self.numY)
        self.hit = np.empty(self.numY.shape, dtype=bool)

    def count(self, beta0: float, t0: float) -> int:
        """#{a : (numY - b numZ)^2 >= t0^2 c (sYY - 2 b sYZ + b^2 sZZ)}."""
        num, ss = self.num, self.ss
        np.multiply(self.sZZ, beta0, out=ss)
        ss += self.m2sYZ
        ss *= beta0
        ss += self.sYY
        ss *= t0 * t0 * self.c
        np.multiply(self.numZ, -beta0, out=num)
        num += self.numY
        num *= num
        np.greater_equal(num, ss, out=self.hit)
        return int(np.count_nonzero(self.hit))


def _t_at(coef: np.ndarray, beta0: float, c: float) -> np.ndarray:
    """t of H0: effect = beta0 from [numY, numZ, ssYY, ssYZ, ssZZ]."""
    numY, numZ, sYY, sYZ, sZZ = coef
    ss = np.maximum(sYY - 2 * beta0 * sYZ + beta0 * beta0 * sZZ, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (numY - beta0 * numZ) / np.sqrt(c * ss)


def enumerate_assignments(n_clusters: int, design: Design, chunk: int = _CHUNK) -> Iterator[np.ndarray]:
    """All assignments as (B, M) cluster indices in chunks (sorted within each path)."""
    tables, left = [], n_clusters
    for m in design.counts:
        m = int(m)
        flat = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(left), m)), dtype=np.int64)
        tables.append(flat.reshape(-1, m))
        left -= m
    sizes = [len(t) for t in tables]
    total = math.prod(sizes)
    strides = [math.prod(sizes[k + 1 :]) for k in range(len(sizes))]
    for start in range(0, total, chunk):
        lin = np.arange(start, min(start + chunk, total), dtype=np.int64)
        chosen = None
        parts = []
        for table, size, stride in zip(tables, sizes, strides):
            rel = table[(lin // stride) % size]
            if chosen is not None:  # r-th cluster not yet chosen
                for j in range(chosen.shape[1]):
                    rel = rel + (chosen[:, j : j + 1] <= rel)
            parts.append(rel)
            chosen = rel if chosen is None else np.sort(np.concatenate([chosen, rel], axis=1), axis=1)
        yield np.concatenate(parts, axis=1)


def sample_assignments(n_clusters: int, design: Design, draws: int, seed: int, chunk: int = _CHUNK) -> Iterator[np.ndarray]:
    """``draws`` seeded uniformly random assignments, in chunks."""
    rng = np.random.default_rng(seed)
    M = int(design.counts.sum())
    bounds = np.concatenate([[0], np.cumsum(design.counts)])
    done = 0
    while done < draws:
        B = min(chunk, draws - done)
        idx = np.argsort(rng.random((B, n_clusters)), axis=1)[:, :M]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            idx[:, lo:hi] = np.sort(idx[:, lo:hi], axis=1)
        yield idx
        done += B


def randomization_test(
    cells: Cells,
    paths: Sequence[np.ndarray],
    *,
    null: float = 0.0,
    max_assignments: int = 5_000_000,
    draws: int = 9_999,
    seed: int = 0,
    alpha: float = 0.05,
    ci: bool = True,
) -> RandomizationResult:
    """Randomization test of H0: effect = null (constant), |t| with CRV1 se as statistic.

    Parameters
    ----------
    cells : cluster x period sums with the observed treatment
    paths : the design's treatment paths, one (T,) 0/1 array per treated cluster
    null : hypothesised constant effect
    max_assignments : enumerate all assignments when there are at most this many
    draws : otherwise, number of seeded random assignments (the observed one is added)
    seed : seed of the sampled assignments
    alpha : level of the interval
    ci : invert the test into an interval (on the same assignments)
    """
    if not 0 < alpha < 1:
        raise ValueError(f"randomization_test: alpha must be in (0, 1), got {alpha}")
    design = make_design(paths, cells.n_periods)
    G = cells.n_clusters
    obs = observed_assignment(cells.treat, design)
    n = np.asarray(cells.n, dtype=float)
    total = design.n_assignments(G)
    exact = total <= max_assignments and G <= 62  # cluster sets are int64 bit masks
    chunks = None if exact else sample_assignments(G, design, int(draws), seed)
    use_z = ci or null != 0.0
    extra = [n[:, None] * demean_treatment(cells.treat, n)] if use_z else []
    eng = _Engine(np.asarray(cells.sums, dtype=float), n, design, extra)

    def coef_of(idx: np.ndarray) -> np.ndarray:
        nums, ss = eng.coefficients(idx)
        return np.stack([nums[0], nums[1], ss[(0, 0)], ss[(0, 1)], ss[(1, 1)]])

    fit = twfe_fit(cells, null=null)
    if exact:
        fe = _FeatureEngine(eng)
        obs_F = fe.features(obs[None, :], design.slot_path)

        def coef_f(Ft: np.ndarray) -> np.ndarray:
            nums, ss = fe.evaluate(Ft)
            if use_z:
                return np.stack([nums[0], nums[1], ss[(0, 0)], ss[(0, 1)], ss[(1, 1)]])
            return np.stack([nums[0], np.zeros_like(nums[0]), ss[(0, 0)], np.zeros_like(nums[0]), np.zeros_like(nums[0])])

        obs_coef = coef_f(obs_F)
        t_obs = float(_t_at(obs_coef, null, eng.c)[0])
        parts, hits = [], 0
        for Ft, valid in fe.enumerate(design):
            cf = coef_f(Ft)
            hit = np.abs(_t_at(cf, null, eng.c)) >= abs(t_obs) * (1 - _RTOL)
            hits += int(np.sum(hit & valid))
            if ci:
                parts.append(cf[:, valid])
        coef = np.concatenate(parts, axis=1) if ci else None
    elif use_z:
        obs_coef = coef_of(obs[None, :])
        t_obs = float(_t_at(obs_coef, null, eng.c)[0])
        coef = np.concatenate([coef_of(idx) for idx in chunks], axis=1)
        hits = int(np.sum(np.abs(_t_at(coef, null, eng.c)) >= abs(t_obs) * (1 - _RTOL)))
    else:
        t_obs = float(eng.t_stats(obs[None, :])[0])
        hits = sum(int(np.sum(np.abs(eng.t_stats(idx)) >= abs(t_obs) * (1 - _RTOL))) for idx in chunks)
    n_assign = total if exact else int(draws) + 1
    p = hits / total if exact else (1 + hits) / (int(draws) + 1)

    lo = hi = np.nan
    if ci:
        counter = _ExtremeCounter(coef, eng.c)

        def p_at(beta0: float) -> float:
            t0 = abs(_t_at(obs_coef, beta0, eng.c)[0]) * (1 - _RTOL)
            k = counter.count(beta0, t0)
            return k / total if exact else (1 + k) / (int(draws) + 1)

        lo, hi = _invert(p_at, fit.beta, fit.se, alpha, rtol=1e-4)
    return RandomizationResult(float(p), float(t_obs), int(n_assign), bool(exact), float(lo), float(hi))
