"""Synthetic DiD: agreement with diff_diff's SyntheticDiD and recovery of a planted effect."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from pipeline.estimation.sdid import sdid, sdid_matrix

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
