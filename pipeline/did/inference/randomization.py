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
the largest group of identical paths once (columns) and the other groups' once
(rows); the statistic of every (column, row) pair is then evaluated on the grid,
each term a column vector, a row vector or an outer product of the two, in
cache-sized blocks, and overlapping sets are masked (``_FeatureEngine``): about 50
numpy passes over each block, 0.2-0.3 s of CPU for the pilot's 4.4 M assignments
(C(31,5) x 31 grid cells, G = 31, T = 60).  Sampled assignments are evaluated slot
by slot (``_Engine``), which is the reference the tests hold the enumeration to.

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
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from pipeline.did.inference._twfe_algebra import crv1_constant, demean_sums, demean_treatment, twfe_fit
from pipeline.did.inference.bootstrap import _invert

if TYPE_CHECKING:  # the estimation package is imported lazily: it may be mid-edit
    from pipeline.did.cells import Cells

_CHUNK = 200_000
_T = TypeVar("_T")
_R = TypeVar("_R")
_THREADS = 4
_BLOCK = 131_072  # grid cells per block of the exact enumeration: fewer, longer numpy passes (the GIL is
# taken between them); 131,072 was the fastest of 8,192 to 1,048,576 on a 2-core EPYC (0.18-0.22 s against
# 0.22-0.36 s at 32,768 for 4.4 M assignments); the counts and the interval do not depend on it


def _on_every_core(fn: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[_R]:
    """``map(fn, items)`` in order, on a thread per core: numpy releases the GIL inside each block's passes.

    Blocks are independent and results come back in block order, so every count
    and every concatenation is the same as in one thread.
    """
    workers = min(os.cpu_count() or 1, _THREADS)
    if workers < 2:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kokeilu-ri") as pool:
        yield from pool.map(fn, items)  # takes every item at once: a block's inputs are a few kB
_MIN_COLS = 256  # columns per block at least, so that numpy's inner loops run long
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


def design_paths(cells: Cells) -> list[np.ndarray]:
    """The treatment paths of the treated clusters, one (T,) array each: what randomization reassigns.

    The design is read off the panel itself: every cluster treated in some
    period contributes its own path, so an assignment gives the same paths
    (with their multiplicities) to as many distinct clusters.
    """
    return [cells.treat[g].copy() for g in np.nonzero(cells.treated_clusters)[0]]


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


@dataclass(frozen=True)
class _Block:
    """A grid of assignments: the largest group's combinations (columns) x the other groups' assignments (rows).

    Features are additive over slots and every feature of path ``path`` comes from
    the columns, every feature of another path from the rows; the features shared
    by all paths (numerators, own-outcome products) are the sum of both.
    """

    path: int  # index of the path of the column group
    cols: np.ndarray  # (F, B) features of the column group's combinations
    rows: np.ndarray  # (F, A) features of the other groups' assignments


class _FeatureEngine:
    """Exact enumeration: the statistics of an assignment from additive per-slot features.

    Every quantity of :class:`_Engine` that sums over treated slots is a sum of
    per-(cluster, path) features, so the features of an assignment are the sum of
    its groups' features.  The largest group of identical paths is enumerated once
    over all clusters (columns); the other groups' assignments (rows) are combined
    with it on a grid by broadcasting, in blocks of about ``_BLOCK`` cells (few, long
    numpy passes), and overlapping combinations are masked out.
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
        for col, k in zip(np.ascontiguousarray(idx.T), slot):
            out += np.take(self.phi[k], col, axis=1)
        return out

    def evaluate(self, Ft: np.ndarray | _Block) -> tuple[list[np.ndarray], dict[tuple[int, int], np.ndarray]]:
        """Numerators and cross sums of scores from features (F, B), or on a block's (A, B) grid."""
        if isinstance(Ft, _Block):
            return self._evaluate_block(Ft)
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

    def _evaluate_block(self, blk: _Block) -> tuple[list[np.ndarray], dict[tuple[int, int], np.ndarray]]:
        """:meth:`evaluate` on the grid of a block, each (A, B) array built in as few passes as the algebra allows.

        The shares of the column path (``p0``) vary along columns and those of the
        other paths (``p[l]``) along rows, so every term is a column vector, a row
        vector or an outer product of the two; vectors are combined before they are
        broadcast to the grid.  About 50 in-place grid passes for the pilot design.
        """
        eng, lay, K = self.eng, self.lay, self.K
        H, Hd, N = eng.H, eng.Hdiag, eng.N
        k0 = blk.path
        O = [k for k in range(K) if k != k0]
        fc, fr = blk.cols[:, None, :], blk.rows[:, :, None]  # (F, 1, B) and (F, A, 1)
        zero = np.zeros((fr.shape[1], 1))

        def col(name: str, k: int = 0) -> np.ndarray:
            return fc[lay[name].start + k]

        def row(name: str, k: int = 0) -> np.ndarray:
            return fr[lay[name].start + k]

        def rsum(terms: Iterator[np.ndarray]) -> np.ndarray:
            return sum(terms, zero)

        p0 = col("Nk", k0) / N
        p = {l: row("Nk", l) / N for l in O}
        # rho = pi' H pi = H00 p0^2 + 2 p0 (H0. p) + p' H p over the other paths
        rho = p0 * rsum(2 * H[k0, l] * p[l] for l in O)
        rho += H[k0, k0] * p0 * p0
        rho += rsum(H[l, m] * p[l] * p[m] for l in O for m in O)
        e = {}
        for k in range(K):  # Hdiag_k - 2 (H pi)_k + rho
            e[k] = rho + (Hd[k] - 2 * H[k, k0] * p0)
            e[k] += rsum(-2 * H[k, l] * p[l] for l in O)
        den = rho * -N
        den += Hd[k0] * col("Nk", k0)
        den += rsum(Hd[l] * row("Nk", l) for l in O)
        bb = e[k0] * e[k0]
        bb *= col("n2k", k0)
        tmp = np.empty_like(bb)
        for l in O:
            np.multiply(e[l], e[l], out=tmp)
            tmp *= row("n2k", l)
            bb += tmp
        rest = (eng.Snn - col("n2k", k0)) + rsum(-row("n2k", l) for l in O)  # units of untreated clusters
        rest *= rho
        rest *= rho
        bb += rest
        nums, ab = [], []
        for i in range(self.R):
            nY = f"nY{i}"
            # v_k = sum over path-k slots of n_j (Y_jk - pi . Y_j)
            v = {k0: col(f"nown{i}", k0) - p0 * col(nY, k0 * K + k0)}
            for l in O:
                v[k0] = v[k0] - p[l] * col(nY, k0 * K + l)
            for k in O:
                v[k] = p0 * row(nY, k * K + k0)
                np.subtract(row(f"nown{i}", k) - rsum(p[l] * row(nY, k * K + l) for l in O), v[k], out=v[k])
            # w = SnY . pi - sum_k pi . sum_{j in k} n_j Y_j: the untreated clusters' part
            w = sum(v[k] for k in O) + v[k0]
            w += eng.SnY[i][k0] * p0 - col(f"nown{i}", k0)
            w += rsum(eng.SnY[i][l] * p[l] - row(f"nown{i}", l) for l in O)
            w *= rho
            ab_i = e[k0] * v[k0]
            for k in O:
                np.multiply(e[k], v[k], out=tmp)
                ab_i += tmp
            ab_i -= w
            nums.append(col(f"num{i}") + row(f"num{i}"))
            ab.append(ab_i)
        betas = [num / den for num in nums]
        ss = {}
        for i, j in self.pairs:
            S = eng.SYY[(i, j)]
            z = f"oY{i}{j}", f"oY{j}{i}"
            # aa = oo - pi . (oY_ij + oY_ji) + pi' S pi
            aa = p0 * (rsum((S[k0, l] + S[l, k0]) * p[l] for l in O) - (row(z[0], k0) + row(z[1], k0)))
            for l in O:
                np.multiply(p[l], col(z[0], l) + col(z[1], l), out=tmp)
                aa -= tmp
            aa += col(f"oo{i}{j}") - p0 * (col(z[0], k0) + col(z[1], k0)) + S[k0, k0] * p0 * p0
            aa += row(f"oo{i}{j}") - rsum(p[l] * (row(z[0], l) + row(z[1], l)) for l in O)
            aa += rsum(S[l, m] * p[l] * p[m] for l in O for m in O)
            # aa - beta_j ab_i - beta_i ab_j + beta_i beta_j bb
            out = betas[i] * bb
            out -= ab[i]
            if i == j:
                out -= ab[i]
                out *= betas[i]
            else:
                out *= betas[j]
                np.multiply(betas[i], ab[j], out=tmp)
                out -= tmp
            out += aa
            ss[(i, j)] = out
        return nums, ss

    def block_of(self, idx: np.ndarray, design: Design) -> _Block:
        """The 1 x 1 block of one assignment idx (M,), laid out as :meth:`enumerate` lays out its blocks."""
        k0 = _column_path(len(self.eng.n), design)
        slot = design.slot_path
        inner = slot == k0
        return _Block(k0, self.features(idx[None, inner], slot[inner]), self.features(idx[None, ~inner], slot[~inner]))

    def enumerate(self, design: Design, chunk: int = _BLOCK) -> Iterator[tuple[_Block, np.ndarray]]:
        """(block, valid mask (A, B)) over all assignments, blocks of about ``chunk`` grid cells."""
        G = len(self.eng.n)
        inner = _column_path(G, design)
        m_in = int(design.counts[inner])
        comb = combinations(G, m_in)
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
        rows = min(len(bits_out), max(1, chunk // min(len(bits_in), _MIN_COLS)))
        cols = min(len(bits_in), max(1, chunk // rows))
        for r in range(0, len(bits_out), rows):
            Fo, bo = F_out[:, r : r + rows], bits_out[r : r + rows, None]
            for c in range(0, len(bits_in), cols):
                yield _Block(inner, F_in[:, c : c + cols], Fo), (bo & bits_in[None, c : c + cols]) == 0


def _column_path(n_clusters: int, design: Design) -> int:
    """The path whose group has the most combinations: enumerated once, along the grid's columns."""
    return int(np.argmax([math.comb(n_clusters, int(m)) for m in design.counts]))


def combinations(n: int, m: int) -> np.ndarray:
    """All m-subsets of range(n) as sorted rows (C(n, m), m), in lexicographic order."""
    out = np.zeros((1, 0), dtype=np.int64)
    for pos in range(m):
        first = out[:, -1] + 1 if pos else np.zeros(1, dtype=np.int64)
        stop = n - (m - pos) + 1  # leave room for the remaining positions
        counts = np.maximum(stop - first, 0)
        keep = np.repeat(np.arange(len(out)), counts)
        offset = np.arange(len(keep)) - np.repeat(np.cumsum(counts) - counts, counts)
        out = np.column_stack([out[keep], np.repeat(first, counts) + offset])
    return out


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


def _count_extreme(
    nums: list[np.ndarray], ss: dict[tuple[int, int], np.ndarray], valid: np.ndarray, t0: float, c: float
) -> int:
    """#{valid a : |t_a| >= t0}, t = num / sqrt(c max(ss, 0)) as :func:`_t_at` at beta0 = 0, in place on ``ss``."""
    t = ss[(0, 0)]
    np.maximum(t, 0.0, out=t)
    t *= c
    np.sqrt(t, out=t)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(nums[0], t, out=t)
    np.abs(t, out=t)
    hit = t >= t0
    hit &= valid
    return int(np.count_nonzero(hit))


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


def randomization_p_values(cells: Cells, paths: Sequence[np.ndarray], treats: np.ndarray, seeds: Sequence[int], *,
                           draws: int, max_assignments: int) -> np.ndarray:
    """p-value of H0: no effect under each of many observed treatments, the r-th with its own seed.

    Entry r is ``randomization_test(cells.with_treatment(treats[r]), paths, draws=draws,
    max_assignments=max_assignments, seed=seeds[r], ci=False).p_value``. Without the
    interval, the statistics of sampled assignments depend on the sums and the paths
    only, so the engine is built once for all the treatments.
    """
    design = make_design(paths, cells.n_periods)
    G = cells.n_clusters
    if design.n_assignments(G) <= max_assignments and G <= 62:
        return np.array([randomization_test(cells.with_treatment(treat), paths, draws=draws,
                                            max_assignments=max_assignments, seed=int(seed), ci=False).p_value
                         for treat, seed in zip(treats, seeds)])
    eng = _Engine(np.asarray(cells.sums, dtype=float), np.asarray(cells.n, dtype=float), design)
    p = np.empty(len(treats))
    for r, (treat, seed) in enumerate(zip(treats, seeds)):
        t_obs = float(eng.t_stats(observed_assignment(treat, design)[None, :])[0])
        hits = sum(int(np.sum(np.abs(eng.t_stats(idx)) >= abs(t_obs) * (1 - _RTOL)))
                   for idx in sample_assignments(G, design, int(draws), int(seed)))
        p[r] = (1 + hits) / (int(draws) + 1)
    return p


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

        def coef_f(blk: _Block) -> np.ndarray:
            nums, ss = fe.evaluate(blk)
            return np.stack([nums[0], nums[1], ss[(0, 0)], ss[(0, 1)], ss[(1, 1)]])

        if use_z:
            obs_coef = coef_f(fe.block_of(obs, design)).reshape(5, 1)
            t_obs = float(_t_at(obs_coef, null, eng.c)[0])
            def valid_coef(item: tuple[_Block, np.ndarray]) -> np.ndarray:
                blk, valid = item
                return coef_f(blk)[:, valid]

            parts, hits = [], 0
            for cf in _on_every_core(valid_coef, fe.enumerate(design)):  # in block order
                hits += int(np.sum(np.abs(_t_at(cf, null, eng.c)) >= abs(t_obs) * (1 - _RTOL)))
                if ci:
                    parts.append(cf)
            coef = np.concatenate(parts, axis=1) if ci else None
        else:
            nums, ss = fe.evaluate(fe.block_of(obs, design))
            t_obs = float(nums[0][0, 0] / np.sqrt(eng.c * max(ss[(0, 0)][0, 0], 0.0)))
            def count(item: tuple[_Block, np.ndarray]) -> int:
                blk, valid = item
                return _count_extreme(*fe.evaluate(blk), valid, abs(t_obs) * (1 - _RTOL), eng.c)

            hits = sum(_on_every_core(count, fe.enumerate(design)))
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
