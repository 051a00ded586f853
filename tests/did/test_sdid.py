"""Synthetic DiD: agreement with diff_diff's SyntheticDiD and recovery of a planted effect."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from pipeline.did.sdid import _frank_wolfe, sdid, sdid_matrix

dd = pytest.importorskip("diff_diff")

EFFECT = 0.8
N_MUNI, N_TREATED, N_MONTHS, FIRST_POST = 31, 6, 36, 24
COLS = dict(unit="kunta", time="month", outcome="y", treatment="d")


def make_panel(seed: int, effect: float = EFFECT) -> pl.DataFrame:
    """Municipality x month panel of cohort means with block treatment.

    y_it = 5 + a_i + g_t + f_i s_t + e_it + effect * D_it with municipality
    levels a_i ~ N(0, 1), a random-walk common trend g_t, a seasonal factor
    s_t = sin(t / 4) with municipality loadings f_i ~ N(1, 0.3) (so plain DiD is
    biased unless the controls are reweighted), noise e_it ~ N(0, 0.3). Six of
    31 municipalities, chosen at random, are treated from month 24 to 35.
    """
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, N_MUNI)[:, None]
    g = np.cumsum(rng.normal(0, 0.3, N_MONTHS))[None, :]
    f = rng.normal(1, 0.3, N_MUNI)[:, None] * np.sin(np.arange(N_MONTHS) / 4)[None, :]
    treated = np.zeros(N_MUNI, dtype=bool)
    treated[rng.choice(N_MUNI, N_TREATED, replace=False)] = True
    D = np.outer(treated, np.arange(N_MONTHS) >= FIRST_POST).astype(int)
    Y = 5 + a + g + f + rng.normal(0, 0.3, (N_MUNI, N_MONTHS)) + effect * D
    return pl.DataFrame({
        "kunta": np.repeat([f"{k:03d}" for k in range(N_MUNI)], N_MONTHS),
        "month": np.tile(np.arange(N_MONTHS), N_MUNI),
        "y": Y.ravel(),
        "d": D.ravel(),
        "ever": np.repeat(treated.astype(int), N_MONTHS),
    })


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    return make_panel(20180101)


@pytest.fixture(scope="module")
def fitted(panel):
    ours = sdid(panel, **COLS, replications=100, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = dd.SyntheticDiD(variance_method="placebo", n_bootstrap=100, seed=11).fit(
            panel.to_pandas(), outcome="y", treatment="ever", unit="kunta", time="month",
            post_periods=list(range(FIRST_POST, N_MONTHS)),
        )
    return ours, ref


def test_estimate_and_weights_equal_diff_diff(fitted) -> None:
    ours, ref = fitted
    assert ours.estimate == pytest.approx(ref.att, abs=1e-6)
    assert ours.zeta_omega == pytest.approx(ref.zeta_omega, rel=1e-12)
    assert ours.zeta_lambda == pytest.approx(ref.zeta_lambda, rel=1e-12)
    omega = np.array([ref.unit_weights[u] for u in ours.control_units])
    lam = np.array([ref.time_weights[t] for t in ours.pre_periods])
    np.testing.assert_allclose(ours.unit_weights, omega, atol=1e-8)
    np.testing.assert_allclose(ours.time_weights, lam, atol=1e-8)
    assert ours.unit_weights.sum() == pytest.approx(1.0) and ours.time_weights.sum() == pytest.approx(1.0)


def test_placebo_inference_equals_diff_diff(fitted) -> None:
    """Same seed, same permutations: the placebo standard error, interval and p-value agree."""
    ours, ref = fitted
    assert ours.std_error == pytest.approx(ref.se, rel=1e-8)
    assert (ours.ci_low, ours.ci_high) == pytest.approx(ref.conf_int, abs=1e-6)
    assert ours.p_value == pytest.approx(ref.p_value, abs=1e-12)
    assert ours.n_placebo == 100


def test_recovers_planted_effect(fitted) -> None:
    ours, _ = fitted
    assert ours.ci_low <= EFFECT <= ours.ci_high
    assert ours.ci_low > 0


def test_tidy(fitted) -> None:
    ours, _ = fitted
    out = ours.tidy()
    assert out.height == 1
    row = out.row(0, named=True)
    assert row["estimator"] == "sdid"
    assert row["estimate"] == ours.estimate and row["std_error"] == ours.std_error
    assert (row["n_units"], row["n_treated_units"], row["n_periods"], row["n_post_periods"]) == (31, 6, 36, 12)
    assert out.schema["n_units"] == pl.Int64
    w = ours.weights_frame()
    assert w.filter(pl.col("kind") == "unit").height == 25 and w.filter(pl.col("kind") == "time").height == 24


def test_matrix_form_is_affine_equivariant(panel) -> None:
    """Shifting the outcome leaves the estimate unchanged; scaling scales it (and the order of rows does not matter)."""
    small = panel.filter(pl.col("month") >= 12)
    base = sdid(small, **COLS, replications=5, seed=1)
    moved = sdid(small.with_columns(pl.col("y") * 3 + 100).sample(fraction=1.0, shuffle=True, seed=3),
                 **COLS, replications=5, seed=1)
    assert moved.estimate == pytest.approx(3 * base.estimate, abs=1e-6)
    assert moved.std_error == pytest.approx(3 * base.std_error, rel=1e-6)
    Y = small.sort("ever", "kunta", "month")["y"].to_numpy().reshape(N_MUNI, -1)
    direct = sdid_matrix(Y, n_treated=N_TREATED, n_post=N_MONTHS - FIRST_POST, replications=5, seed=1)
    assert direct.estimate == pytest.approx(base.estimate, abs=1e-12)


def test_rejects_non_block_and_unbalanced_panels(panel) -> None:
    staggered = panel.with_columns(
        pl.when((pl.col("ever") == 1) & (pl.col("month") == FIRST_POST) & (pl.col("kunta") == panel["kunta"][
            panel["ever"].arg_max()])).then(0).otherwise(pl.col("d")).alias("d")
    )
    with pytest.raises(ValueError, match="expected block treatment"):
        sdid(staggered, **COLS, replications=5)
    with pytest.raises(ValueError, match="expected a balanced panel"):
        sdid(panel.slice(1), **COLS, replications=5)
    with pytest.raises(ValueError, match="expected treated and control units"):
        sdid(panel.with_columns(pl.lit(0).alias("d")), **COLS, replications=5)


def textbook_frank_wolfe(A: np.ndarray, b: np.ndarray, zeta: float, x: np.ndarray, tol: float,
                         max_steps: int) -> np.ndarray:
    """One problem, as synthdid's ``fw.step`` loop reads: recompute the fit, gradient and objective every step."""
    N = A.shape[0]
    eta = N * zeta**2
    prev = np.inf
    for _ in range(max_steps):
        Ax = A @ x
        half_grad = A.T @ (Ax - b) + eta * x
        i = int(np.argmin(half_grad))
        d = -x
        d[i] += 1.0
        d_err = A[:, i] - Ax
        denom = d_err @ d_err + eta * (d @ d)
        if np.abs(d).max() > 1e-8 and denom > 0:
            x = x + np.clip(-(half_grad @ d) / denom, 0.0, 1.0) * d
        val = zeta**2 * (x @ x) + np.sum((A @ x - b) ** 2) / N
        if prev - val < tol**2:
            break
        prev = val
    return x


def fw_problems(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred (R, N, K + 1) problems with warm starts: random columns, near-collinear columns
    (levels plus small noise, as municipality paths are), and one whose target is its first column."""
    rng = np.random.default_rng(seed)
    R, N, K = 6, 14, 9
    Y = rng.normal(size=(R, N, K + 1))
    levels = rng.normal(size=(N, 1))
    Y[2:4] = levels + np.cumsum(rng.normal(0, 0.3, K + 1)) + rng.normal(0, 0.01, (2, N, K + 1))
    Y[4, :, -1] = Y[4, :, 0]
    Yc = Y - Y.mean(axis=1, keepdims=True)
    init = rng.dirichlet(np.ones(K), R)
    init[4] = np.eye(K)[0]
    return Yc, init


@pytest.mark.parametrize("zeta", [0.0, 1e-6, 0.3])
def test_frank_wolfe_follows_the_textbook_iteration(zeta) -> None:
    """Batched steps on the kept state take the same path as the one-problem loop that recomputes everything,
    also when warm-started at the solution (the first step's decrease never stops a problem)."""
    Yc, init = fw_problems(7)
    ours = _frank_wolfe(Yc, zeta, init, 1e-5, 10_000)
    again = _frank_wolfe(Yc, zeta, ours, 1e-5, 10_000)
    for r in range(Yc.shape[0]):
        ref = textbook_frank_wolfe(Yc[r, :, :-1], Yc[r, :, -1], zeta, init[r].copy(), 1e-5, 10_000)
        np.testing.assert_allclose(ours[r], ref, rtol=0, atol=1e-10 * np.abs(ref).max())
        ref = textbook_frank_wolfe(Yc[r, :, :-1], Yc[r, :, -1], zeta, ref, 1e-5, 10_000)
        np.testing.assert_allclose(again[r], ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    if zeta == 0.0:
        np.testing.assert_array_equal(ours[4], np.eye(Yc.shape[2] - 1)[0])


def test_frank_wolfe_batch_equals_one_problem_at_a_time() -> None:
    """Problems stop at different steps; dropping the finished ones leaves the others' paths unchanged."""
    Yc, init = fw_problems(8)
    batch = _frank_wolfe(Yc, 0.1, init, 1e-6, 10_000)
    one = np.vstack([_frank_wolfe(Yc[r:r + 1], 0.1, init[r:r + 1], 1e-6, 10_000) for r in range(Yc.shape[0])])
    np.testing.assert_allclose(batch, one, rtol=0, atol=1e-13)
    capped = _frank_wolfe(Yc, 0.1, init, 1e-6, 3)
    for r in range(Yc.shape[0]):
        ref = textbook_frank_wolfe(Yc[r, :, :-1], Yc[r, :, -1], 0.1, init[r].copy(), 1e-6, 3)
        np.testing.assert_allclose(capped[r], ref, rtol=0, atol=1e-13)
    assert np.allclose(batch.sum(axis=1), 1.0) and (batch >= 0).all()
