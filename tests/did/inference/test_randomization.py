"""Randomization inference (and placebo size) from cells against explicit reassignment
with person-level dense regressions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest

from pipeline.did.cells import Cells
from pipeline.did.inference import placebo_size, randomization_test, twfe_fit
from pipeline.did.inference._twfe_algebra import crv1_constant
from pipeline.did.inference.placebo import jackknife_p_values, placebo_treatments
from pipeline.did.inference.randomization import enumerate_assignments, make_design, sample_assignments


def within(z: np.ndarray) -> np.ndarray:
    return z - z.mean(axis=1, keepdims=True) - z.mean(axis=0, keepdims=True) + z.mean()


def dense_t(y: np.ndarray, cl: np.ndarray, treat: np.ndarray) -> tuple[float, float, float]:
    """beta, CRV1 se, t from person-level demeaned data."""
    G = treat.shape[0]
    yt, dt = within(y), within(treat[cl])
    beta = np.sum(dt * yt) / np.sum(dt * dt)
    s = np.zeros(G)
    np.add.at(s, cl, np.sum(dt * (yt - beta * dt), axis=1))
    se = np.sqrt(crv1_constant(G, y.shape[1], y.shape[0]) * np.sum(s**2)) / np.sum(dt * dt)
    return beta, se, beta / se


def panel(G: int, T: int, treat: np.ndarray, seed: int, effect: float = 0.5):
    rng = np.random.default_rng(seed)
    n = rng.integers(2, 6, size=G)
    cl = np.repeat(np.arange(G), n)
    y = (
        rng.normal(size=cl.size)[:, None]
        + rng.normal(size=T)[None, :]
        + effect * treat[cl]
        + 0.8 * rng.normal(size=(G, T))[cl]
        + rng.normal(size=(cl.size, T))
    )
    sums = np.zeros((G, T))
    np.add.at(sums, cl, y)
    return y, cl, Cells(np.arange(G), np.arange(T), n, sums, treat)


def tiny_design(G: int = 7, T: int = 8):
    p_long = np.zeros(T)
    p_long[3:] = 1
    p_short = np.zeros(T)
    p_short[5:7] = 1
    treat = np.zeros((G, T))
    treat[1], treat[4] = p_long, p_short
    return treat, [p_long, p_short]


@pytest.mark.parametrize("null", [0.0, 0.7])
def test_exact_p_equals_brute_force_reassignment(null):
    G, T = 7, 8
    treat, paths = tiny_design(G, T)
    y, cl, cells = panel(G, T, treat, seed=3)
    res = randomization_test(cells, paths, null=null, ci=False)
    y0 = y - null * treat[cl]  # H0: constant effect `null`
    t_obs = dense_t(y0, cl, treat)[2]
    ts = []
    for g1, g2 in itertools.permutations(range(G), 2):
        tr = np.zeros((G, T))
        tr[g1], tr[g2] = paths
        ts.append(dense_t(y0, cl, tr)[2])
    ts = np.array(ts)
    assert res.exact and res.n_assignments == 42 == len(ts)
    assert res.t_stat == pytest.approx(t_obs, rel=1e-10)
    assert res.p_value == pytest.approx(np.mean(np.abs(ts) >= abs(t_obs) - 1e-9))


def test_identical_paths_are_one_assignment():
    T = 6
    p = np.zeros(T)
    p[2:] = 1
    q = np.zeros(T)
    q[4:] = 1
    design = make_design([p, p, p, q], T)
    rows = np.concatenate(list(enumerate_assignments(9, design, chunk=100)))
    assert len(rows) == design.n_assignments(9) == math.comb(9, 3) * 6
    keys = {(frozenset(r[:3]), r[3]) for r in rows}
    assert len(keys) == len(rows)
    assert all(len(set(r)) == 4 for r in rows)


def test_pilot_design_count():
    T = 60
    two = np.zeros(T)
    two[24:48] = 1
    one = np.zeros(T)
    one[24:36] = 1
    design = make_design([two] * 5 + [one], T)
    assert design.n_assignments(31) == 4_417_686 == math.comb(31, 5) * 26


def test_sampled_mode_seeded_and_reproducible():
    G, T = 12, 8
    treat, paths = tiny_design(G, T)
    _, _, cells = panel(G, T, treat, seed=4)
    a = randomization_test(cells, paths, max_assignments=10, draws=499, seed=5, ci=False)
    b = randomization_test(cells, paths, max_assignments=10, draws=499, seed=5, ci=False)
    assert a == b and not a.exact and a.n_assignments == 500
    assert round(a.p_value * 500) == pytest.approx(a.p_value * 500)  # (1 + k) / (draws + 1)
    exact = randomization_test(cells, paths, ci=False)
    assert abs(a.p_value - exact.p_value) < 0.06
    idx = next(sample_assignments(G, make_design(paths, T), 200, seed=1))
    assert all(len(set(r)) == 2 for r in idx)


def test_ci_inverts_the_test():
    G, T = 10, 8
    treat, paths = tiny_design(G, T)
    _, _, cells = panel(G, T, treat, seed=8, effect=1.0)
    res = randomization_test(cells, paths, alpha=0.1)
    fit = twfe_fit(cells)
    assert res.ci_low < fit.beta < res.ci_high
    eps = 1e-3 * fit.se
    for inside in (res.ci_low + eps, res.ci_high - eps):
        assert randomization_test(cells, paths, null=inside, ci=False).p_value > 0.1
    for outside in (res.ci_low - eps, res.ci_high + eps):
        assert randomization_test(cells, paths, null=outside, ci=False).p_value <= 0.1
    sampled = randomization_test(cells, paths, alpha=0.1, max_assignments=1, draws=2000, seed=1)
    assert sampled.ci_low < fit.beta < sampled.ci_high


def test_misspecified_paths_are_refused():
    treat, paths = tiny_design()
    _, _, cells = panel(7, 8, treat, seed=1)
    with pytest.raises(ValueError, match="follow"):
        randomization_test(cells, paths[:1], ci=False)


def test_jackknife_equals_brute_force():
    G, T = 9, 8
    _, paths = tiny_design(G, T)
    zero = np.zeros((G, T))
    y, cl, cells = panel(G, T, zero, seed=6)
    treat = placebo_treatments(G, paths, 3, seed=0)
    got = jackknife_p_values(cells.sums, cells.n.astype(float), treat)
    from scipy import stats

    for r in range(3):
        beta = dense_t(y, cl, treat[r])[0]
        loo = []
        for g in range(G):
            keep = cl != g
            cl_k = np.searchsorted(np.delete(np.arange(G), g), cl[keep])
            loo.append(dense_t(y[keep], cl_k, np.delete(treat[r], g, axis=0))[0])
        loo = np.array(loo)
        se = np.sqrt((G - 1) / G * np.sum((loo - loo.mean()) ** 2))
        assert got[r] == pytest.approx(2 * stats.t.sf(abs(beta / se), G - 1), rel=1e-8)


def test_placebo_size_frame():
    G, T = 14, 10
    _, paths = tiny_design(G, T)
    _, _, cells = panel(G, T, np.zeros((G, T)), seed=9, effect=0.0)
    out = placebo_size(cells, paths, replications=20, bootstrap_draws=199, ri_draws=199, seed=1)
    assert out.columns == ["method", "replications", "rejections", "rejection_rate", "alpha"]
    assert out["method"].to_list() == ["cv1", "cv3", "wcr_webb", "wcu_webb", "randomization"]
    assert out["replications"].to_list() == [20] * 5
    assert out.filter(pl.col("rejection_rate") > 1).height == 0
    again = placebo_size(cells, paths, replications=20, bootstrap_draws=199, ri_draws=199, seed=1)
    assert out.equals(again)


@pytest.mark.parametrize("groups", [(2, 1, 1), (3,)])
def test_feature_enumeration_equals_slot_engine(groups):
    """The exact path (group features, masked broadcast) equals per-assignment evaluation."""
    from pipeline.did.inference._twfe_algebra import demean_treatment
    from pipeline.did.inference.randomization import _Engine, _FeatureEngine, _t_at, observed_assignment

    G, T = 9, 8
    base = [np.r_[np.zeros(3), np.ones(5)], np.r_[np.zeros(5), np.ones(3)], np.r_[np.zeros(2), np.ones(3), np.zeros(3)]]
    paths = [base[k] for k, m in enumerate(groups) for _ in range(m)]
    treat = np.zeros((G, T))
    treat[: len(paths)] = paths
    _, _, cells = panel(G, T, treat, seed=12)
    design = make_design(paths, T)
    n = cells.n.astype(float)
    eng = _Engine(cells.sums, n, design, [n[:, None] * demean_treatment(treat, n)])
    fe = _FeatureEngine(eng)

    def stats(nums, ss, beta0):
        coef = np.stack([nums[0], nums[1], ss[(0, 0)], ss[(0, 1)], ss[(1, 1)]])
        return np.sort(_t_at(coef, beta0, eng.c))

    slow = [eng.coefficients(idx) for idx in enumerate_assignments(G, design)]
    fast = []
    for Ft, valid in fe.enumerate(design, chunk=500):
        nums, ss = fe.evaluate(Ft)
        fast.append(([x[valid] for x in nums], {k: v[valid] for k, v in ss.items()}))
    for beta0 in (0.0, 0.4):
        a = np.concatenate([stats(*c, beta0) for c in slow])
        b = np.concatenate([stats(*c, beta0) for c in fast])
        assert len(a) == len(b) == design.n_assignments(G)
        finite = np.isfinite(np.sort(a))
        np.testing.assert_allclose(np.sort(a)[finite], np.sort(b)[finite], rtol=1e-9)
    obs = observed_assignment(treat, design)
    nums, ss = fe.evaluate(fe.features(obs[None, :], design.slot_path))
    nums2, ss2 = eng.coefficients(obs[None, :])
    assert nums[0] == pytest.approx(nums2[0]) and ss[(0, 0)] == pytest.approx(ss2[(0, 0)])
