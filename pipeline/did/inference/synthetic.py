r"""Randomization inference for synthetic DiD: the treated block reassigned to other units.

An assignment makes N_1 of the N units the treated ones (the block design keeps
its periods); the statistic is :math:`|\hat\tau_a|`, the SDID estimate with that
assignment, computed with the fit's regularisation (:math:`\zeta_\omega`,
:math:`\zeta_\lambda` and the stopping tolerance of the observed fit, as the
placebo standard error of Arkhangelsky et al. keeps them) from uniform starting
weights, so the observed assignment reproduces the estimate. All assignments are
enumerated when there are at most ``max_assignments``, otherwise ``draws``
seeded ones and the observed one are used.

The interval inverts the test of a constant effect :math:`\beta_0` (outcomes
:math:`Y - \beta_0 D_{obs}`). The unit weights depend on pre-treatment periods
only and are kept; the time weights and the estimates are recomputed at each
:math:`\beta_0` the search asks for.
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.did.inference.randomization import (
    _RTOL,
    RandomizationResult,
    _invert,
    enumerate_assignments,
    make_design,
    observed_assignment,
    sample_assignments,
)
from pipeline.did.sdid import _estimate, _noise_level, _time_weights, _unit_weights

_BATCH = 1_000


def _split(Yn: np.ndarray, sets: np.ndarray, n_pre: int) -> tuple[np.ndarray, ...]:
    """co_pre, co_post (R, T, N0) and tr_pre, tr_post (R, T) of each assignment's treated rows ``sets`` (R, N1)."""
    N = Yn.shape[0]
    R = len(sets)
    mask = np.zeros((R, N), dtype=bool)
    mask[np.arange(R)[:, None], sets] = True
    co = np.stack([Yn[~m] for m in mask])  # (R, N0, T)
    tr = np.stack([Yn[m].mean(axis=0) for m in mask])  # (R, T)
    return (co[:, :, :n_pre].transpose(0, 2, 1), co[:, :, n_pre:].transpose(0, 2, 1), tr[:, :n_pre], tr[:, n_pre:])


def _taus(Yn: np.ndarray, sets: np.ndarray, n_pre: int, zo: float, zl: float, tol: float,
          omega: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """SDID estimates (normalised units) of assignments ``sets`` and their unit weights (reused when given)."""
    co_pre, co_post, tr_pre, tr_post = _split(Yn, sets, n_pre)
    if omega is None:
        omega = _unit_weights(co_pre, tr_pre, zo, tol, None)
    lam = _time_weights(co_pre, co_post, zl, tol, None)
    return _estimate(co_pre, co_post, tr_pre, tr_post, omega, lam), omega


def sdid_randomization(Y: np.ndarray, *, n_treated: int, n_post: int, null: float = 0.0,
                       max_assignments: int = 20_000, draws: int = 999, seed: int = 0, alpha: float = 0.05,
                       ci: bool = True) -> RandomizationResult:
    """Randomization test of H0: constant effect = null for SDID on the matrix of :func:`~pipeline.did.sdid.sdid_matrix`.

    ``Y`` is units x periods, its last ``n_treated`` rows treated in its last
    ``n_post`` columns. ``t_stat`` of the result holds the observed estimate
    under the null (the statistic is the estimate itself).
    """
    Y = np.asarray(Y, dtype=float)
    N, T = Y.shape
    n_co, n_pre = N - n_treated, T - n_post
    shift = float(Y[:n_co, :n_pre].mean())
    raw = float(Y[:n_co, :n_pre].std())
    scale = raw if np.isfinite(raw) and raw > 1e-12 * max(abs(shift), 1.0) else 1.0
    Yn = (Y - shift) / scale
    noise = _noise_level(Yn[:n_co, :n_pre].T)
    zo, zl = (n_treated * n_post) ** 0.25 * noise, 1e-6 * noise
    tol = 1e-5 * noise if noise > 0 else 1e-5
    D = np.zeros((N, T))
    D[n_co:, n_pre:] = 1.0
    design = make_design([D[-1]] * n_treated, T)
    total = math.comb(N, n_treated)
    exact = total <= max_assignments
    chunks = enumerate_assignments(N, design) if exact else sample_assignments(N, design, int(draws), seed)
    sets = np.concatenate(list(chunks))
    obs = np.arange(n_co, N)[None, :]
    batches = [sets[i:i + _BATCH] for i in range(0, len(sets), _BATCH)]
    omegas: list[np.ndarray | None] = [None] * len(batches)
    omega_obs: list[np.ndarray | None] = [None]

    def p_at(beta0: float) -> tuple[float, float]:
        Yb = Yn - (beta0 / scale) * D
        tau_obs, omega_obs[0] = _taus(Yb, obs, n_pre, zo, zl, tol, omega_obs[0])
        hits = 0
        for i, b in enumerate(batches):
            taus, omegas[i] = _taus(Yb, b, n_pre, zo, zl, tol, omegas[i])
            hits += int(np.sum(np.abs(taus) >= abs(tau_obs[0]) * (1 - _RTOL)))
        p = hits / len(sets) if exact else (1 + hits) / (len(sets) + 1)
        return p, float(tau_obs[0]) * scale

    p, tau = p_at(null)
    lo = hi = np.nan
    if ci:
        est = p_at(0.0)[1] if null != 0.0 else tau
        lo, hi = _invert(lambda b: p_at(b)[0], est, max(abs(est), scale * 1e-3), alpha, rtol=1e-3)
    return RandomizationResult(float(p), float(tau), int(len(sets) if exact else len(sets) + 1), bool(exact),
                               float(lo), float(hi))


def blocks_randomization(means: np.ndarray, treat: np.ndarray, *, max_assignments: int = 20_000,
                         draws: int = 999, seed: int = 0) -> RandomizationResult:
    """Randomization p-value of no effect for SDID by adoption block, averaged over the blocks.

    ``means`` and ``treat`` are clusters x periods. Each distinct treatment path
    is a block, estimated against the clusters treated by no path on its
    pre-period and its treated periods (later periods left out), and the block
    estimates are averaged with weights by treated cluster-periods. Each
    assignment gives the design's paths to distinct clusters; every block is
    re-estimated with the observed block's normalisation and regularisation.
    The statistic is the absolute average; no interval.
    """
    means, treat = np.asarray(means, dtype=float), np.asarray(treat, dtype=float)
    G, T = means.shape
    treated = np.any(treat != 0, axis=1)
    design = make_design([treat[g] for g in np.nonzero(treated)[0]], T)
    blocks = []
    for k, path in enumerate(design.paths):
        on = path != 0
        first, last = np.flatnonzero(on)[[0, -1]]
        cols = np.arange(last + 1)
        n_pre, n_post = int(first), int(last + 1 - first)
        co = means[~treated][:, cols]
        shift = float(co[:, :n_pre].mean())
        raw = float(co[:, :n_pre].std())
        scale = raw if np.isfinite(raw) and raw > 1e-12 * max(abs(shift), 1.0) else 1.0
        noise = _noise_level(((co - shift) / scale)[:, :n_pre].T)
        m = int(design.counts[k])
        blocks.append((k, cols, n_pre, shift, scale, (m * n_post) ** 0.25 * noise, 1e-6 * noise,
                       1e-5 * noise if noise > 0 else 1e-5, m * n_post))
    weights = np.array([b[-1] for b in blocks], dtype=float)
    weights /= weights.sum()
    slot = design.slot_path

    def estimates(idx: np.ndarray) -> np.ndarray:
        B = len(idx)
        mask = np.zeros((B, G), dtype=bool)
        mask[np.arange(B)[:, None], idx] = True
        ctrl = np.argsort(mask, axis=1, kind="stable")[:, : G - idx.shape[1]]  # untreated clusters, in order
        out = np.zeros(B)
        for (k, cols, n_pre, shift, scale, zo, zl, tol, _), w in zip(blocks, weights):
            Yn = (means[:, cols] - shift) / scale
            co = Yn[ctrl]  # (B, N0, Tk)
            tr = Yn[idx[:, slot == k]].mean(axis=1)  # (B, Tk)
            co_pre, co_post = co[:, :, :n_pre].transpose(0, 2, 1), co[:, :, n_pre:].transpose(0, 2, 1)
            tr_pre, tr_post = tr[:, :n_pre], tr[:, n_pre:]
            omega = _unit_weights(co_pre, tr_pre, zo, tol, None)
            lam = _time_weights(co_pre, co_post, zl, tol, None)
            out += w * scale * _estimate(co_pre, co_post, tr_pre, tr_post, omega, lam)
        return out

    obs = float(estimates(observed_assignment(treat, design)[None, :])[0])
    total = design.n_assignments(G)
    exact = total <= max_assignments
    chunks = enumerate_assignments(G, design, chunk=_BATCH) if exact else \
        sample_assignments(G, design, int(draws), seed, chunk=_BATCH)
    hits = n = 0
    for idx in chunks:
        est = estimates(idx)
        hits += int(np.sum(np.abs(est) >= abs(obs) * (1 - _RTOL)))
        n += len(idx)
    p = hits / n if exact else (1 + hits) / (n + 1)
    return RandomizationResult(float(p), obs, int(n if exact else n + 1), bool(exact), float("nan"), float("nan"))
