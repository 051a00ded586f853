"""Wild cluster bootstrap from cells: equals a dense person-level implementation draw
for draw, a brute-force enumeration of Rademacher signs, and the wildboottest package."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.did.cells import Cells
from pipeline.did.inference import twfe_fit, wild_cluster_bootstrap
from pipeline.did.inference._twfe_algebra import batch_beta_t, crv1_constant
from pipeline.did.inference.bootstrap import all_sign_vectors, bootstrap_t_stats, weight_chunks


def make_panel(G: int = 9, T: int = 7, seed: int = 1, effect: float = 0.3, sizes=(2, 5)):
    """Person-level panel: y (units x T), cluster of each unit, cluster treatment (G x T)."""
    rng = np.random.default_rng(seed)
    n = rng.integers(sizes[0], sizes[1] + 1, size=G)
    treat = np.zeros((G, T))
    treat[0, T // 2 :] = 1
    treat[1, T // 2 :] = 1
    treat[2, T // 3 :] = 1
    cl = np.repeat(np.arange(G), n)
    a = rng.normal(size=cl.size)[:, None]
    g_t = rng.normal(size=T)[None, :]
    shock = rng.normal(size=(G, T))[cl] * 0.7
    y = a + g_t + effect * treat[cl] + shock + rng.normal(size=(cl.size, T))
    return y, cl, n, treat


def to_cells(y, cl, n, treat) -> Cells:
    G, T = treat.shape
    sums = np.zeros((G, T))
    np.add.at(sums, cl, y)
    return Cells(np.arange(G), np.arange(T), n, sums, treat)


def within(z: np.ndarray) -> np.ndarray:
    """Exact two-way demeaning of a balanced person x period array."""
    return z - z.mean(axis=1, keepdims=True) - z.mean(axis=0, keepdims=True) + z.mean()


def dense_fit(y, cl, D, G):
    """beta, CRV1 se from person-level demeaned data (FWL), c = G/(G-1)(N-1)/(N-T)."""
    yt, dt = within(y), within(D)
    beta = np.sum(dt * yt) / np.sum(dt * dt)
    u = yt - beta * dt
    s = np.zeros(G)
    np.add.at(s, cl, np.sum(dt * u, axis=1))
    units, T = y.shape
    c = crv1_constant(G, T, units)
    se = np.sqrt(c * np.sum(s**2)) / np.sum(dt * dt)
    return beta, se


def dense_bootstrap_t(y, cl, treat, W, b0):
    """Re-estimate the two-way model on y* = fitted + w_g u for every weight row."""
    G = treat.shape[0]
    D = treat[cl]
    u = within(y) - b0 * within(D)  # residuals of the model with beta = b0
    fitted = y - u
    out = []
    for w in W:
        beta, se = dense_fit(fitted + w[cl][:, None] * u, cl, D, G)
        out.append((beta - b0) / se)
    return np.array(out)


def test_twfe_fit_equals_dummy_regression():
    y, cl, n, treat = make_panel()
    cells = to_cells(y, cl, n, treat)
    G, T = treat.shape
    units = y.shape[0]
    # explicit dummy regression: D, unit dummies, T-1 period dummies
    Yv = y.ravel()
    D = treat[cl].ravel()
    unit = np.repeat(np.arange(units), T)
    per = np.tile(np.arange(T), units)
    X = np.column_stack([D, np.eye(units)[unit], np.eye(T)[per][:, 1:]])
    coef, *_ = np.linalg.lstsq(X, Yv, rcond=None)
    u = Yv - X @ coef
    bread = np.linalg.pinv(X.T @ X)
    meat = np.zeros((X.shape[1], X.shape[1]))
    clv = cl[unit]
    for g in range(G):
        sg = X[clv == g].T @ u[clv == g]
        meat += np.outer(sg, sg)
    N, K = units * T, T
    V = G / (G - 1) * (N - 1) / (N - K) * bread @ meat @ bread
    fit = twfe_fit(cells)
    assert fit.beta == pytest.approx(coef[0], rel=1e-10)
    assert fit.se == pytest.approx(np.sqrt(V[0, 0]), rel=1e-8)
    b, t = batch_beta_t(cells.sums, cells.n, treat[None])
    assert b[0] == pytest.approx(coef[0], rel=1e-10)
    assert t[0] == pytest.approx(fit.t_stat, rel=1e-10)


@pytest.mark.parametrize("restricted", [True, False])
def test_draws_equal_dense_reestimation(restricted):
    y, cl, n, treat = make_panel()
    cells = to_cells(y, cl, n, treat)
    fit = twfe_fit(cells)
    b0 = 0.1 if restricted else fit.beta
    W = next(weight_chunks("webb", cells.n_clusters, 200, seed=3))
    fast = bootstrap_t_stats(cells, W, b0)
    slow = dense_bootstrap_t(y, cl, treat, W, b0)
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("restricted", [True, False])
def test_p_value_equals_dense_with_same_weights(restricted):
    y, cl, n, treat = make_panel(seed=5)
    cells = to_cells(y, cl, n, treat)
    fit = twfe_fit(cells)
    null = 0.2
    res = wild_cluster_bootstrap(cells, null=null, draws=300, restricted=restricted, seed=11, ci=False)
    W = np.concatenate(list(weight_chunks("webb", cells.n_clusters, 300, seed=11)))
    b0 = null if restricted else fit.beta
    t_star = dense_bootstrap_t(y, cl, treat, W, b0)
    t_obs = (fit.beta - null) / fit.se
    assert res.t_stat == pytest.approx(t_obs)
    assert res.p_value == pytest.approx(np.mean(np.abs(t_star) >= abs(t_obs)))
    assert not res.exact_enumeration and res.draws == 300


def test_rademacher_full_enumeration_equals_brute_force():
    y, cl, n, treat = make_panel(G=8, seed=7)
    cells = to_cells(y, cl, n, treat)
    res = wild_cluster_bootstrap(cells, draws=999, weights="rademacher", ci=False)
    assert res.exact_enumeration and res.draws == 2**8
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * 8, indexing="ij")).reshape(8, -1).T
    assert {tuple(s) for s in signs} == {tuple(s) for s in all_sign_vectors(8)}
    t_star = dense_bootstrap_t(y, cl, treat, signs, 0.0)
    t_obs = twfe_fit(cells).t_stat
    expected = np.mean(np.abs(t_star) >= abs(t_obs) * (1 - 1e-10))
    assert res.p_value == pytest.approx(expected)
    # w = 1 reproduces the data, so the observed statistic is among the draws
    assert res.p_value >= 1 / 2**8


def test_ci_is_test_inversion():
    y, cl, n, treat = make_panel(G=10, seed=2)
    cells = to_cells(y, cl, n, treat)
    res = wild_cluster_bootstrap(cells, draws=1999, seed=4)
    assert res.ci_low < twfe_fit(cells).beta < res.ci_high
    eps = 1e-3 * twfe_fit(cells).se
    for end, inside in ((res.ci_low, res.ci_low + eps), (res.ci_high, res.ci_high - eps)):
        p_in = wild_cluster_bootstrap(cells, null=inside, draws=1999, seed=4, ci=False).p_value
        assert p_in > 0.05
    for outside in (res.ci_low - eps, res.ci_high + eps):
        assert wild_cluster_bootstrap(cells, null=outside, draws=1999, seed=4, ci=False).p_value <= 0.05
    unr = wild_cluster_bootstrap(cells, draws=1999, seed=4, restricted=False)
    assert unr.ci_low < twfe_fit(cells).beta < unr.ci_high


def test_seeded_and_validated():
    y, cl, n, treat = make_panel()
    cells = to_cells(y, cl, n, treat)
    a = wild_cluster_bootstrap(cells, draws=500, seed=9, ci=False)
    b = wild_cluster_bootstrap(cells, draws=500, seed=9, ci=False)
    assert a == b
    with pytest.raises(ValueError, match="weights"):
        wild_cluster_bootstrap(cells, weights="mammen")


@pytest.mark.parametrize("restricted", [True, False])
def test_agrees_with_wildboottest(restricted):
    pd = pytest.importorskip("pandas")
    sm = pytest.importorskip("statsmodels.api")
    from wildboottest.wildboottest import wildboottest

    y, cl, n, treat = make_panel(G=12, T=8, seed=21, effect=0.25, sizes=(5, 5))
    cells = to_cells(y, cl, n, treat)
    units, T = y.shape
    unit = np.repeat(np.arange(units), T)
    per = np.tile(np.arange(T), units)
    X = pd.DataFrame(np.column_stack([treat[cl].ravel(), np.eye(units)[unit], np.eye(T)[per][:, 1:]]))
    X.columns = ["D"] + [f"u{i}" for i in range(units)] + [f"t{i}" for i in range(1, T)]
    model = sm.OLS(y.ravel(), X)
    ref = wildboottest(
        model, B=9999, cluster=cl[unit], param="D", weights_type="webb",
        impose_null=restricted, seed=1, show=False, parallel=False,
    )
    p_ref = float(np.asarray(ref["p-value"]).ravel()[0])
    ours = wild_cluster_bootstrap(cells, draws=9999, restricted=restricted, seed=2, ci=False)
    assert abs(ours.p_value - p_ref) < 0.02


@pytest.mark.parametrize("weights", ["webb", "rademacher"])
def test_joint_wcr_wcu_equal_separate_calls(weights):
    from pipeline.did.inference.bootstrap import wild_cluster_bootstraps

    y, cl, n, treat = make_panel(G=12, seed=5)
    cells = to_cells(y, cl, n, treat)
    wcr, wcu = wild_cluster_bootstraps(cells, draws=40_000, weights=weights, seed=9)
    for joint, restricted in ((wcr, True), (wcu, False)):
        alone = wild_cluster_bootstrap(cells, draws=40_000, weights=weights, seed=9, restricted=restricted)
        assert joint.p_value == alone.p_value
        assert joint.ci_low == pytest.approx(alone.ci_low, rel=1e-12, abs=1e-14)
        assert joint.ci_high == pytest.approx(alone.ci_high, rel=1e-12, abs=1e-14)
