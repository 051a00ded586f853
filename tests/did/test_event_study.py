"""Event study: aggregated == linearmodels == pyfixest, and the pretrend Wald test."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from pipeline.did.event_study import event_study, event_study_cells
from pipeline.did.panel import cells_from_panel

COLS = dict(unit="unit", time="time", outcome="y", cluster="cluster", event_time="event_time")


def make_event_panel(
    seed: int, *, G: int = 31, units: tuple[int, int] = (5, 15), T: int = 24, staggered: bool = True
) -> pl.DataFrame:
    """Balanced panel, 6 of G clusters treated from staggered starts (one turns off after 8 periods).

    y_it = a_i + g_t + u_gt + tau_e D_gt + e_it, tau_e = 1 + 0.1 e for event time e >= 0
    while treated, no anticipation. ``event_time`` = t - start of the cluster,
    null for never-treated clusters. ``staggered=False`` starts all six at T // 2.
    """
    rng = np.random.default_rng(seed)
    n = rng.integers(units[0], units[1] + 1, size=G)
    starts = np.full(G, -1)
    starts[:6] = rng.integers(T // 3, 2 * T // 3, size=6) if staggered else T // 2
    t = np.arange(T)
    E = np.where(starts[:, None] >= 0, t[None, :] - starts[:, None], np.nan)
    D = (E >= 0).astype(float)
    D[5, starts[5] + 8 :] = 0
    effect = np.where(D > 0, 1 + 0.1 * np.nan_to_num(E), 0.0)
    cl = np.repeat(np.arange(G), n)
    U = len(cl)
    y = rng.normal(size=U)[:, None] * 2 + rng.normal(size=T)[None] + 0.3 * rng.normal(size=(G, T))[cl] + effect[cl] + rng.normal(size=(U, T))
    return pl.DataFrame(
        {
            "unit": np.repeat(np.arange(U), T),
            "time": np.tile(t, U),
            "cluster": np.repeat(cl, T),
            "event_time": E[cl].ravel(),
            "y": y.ravel(),
        }
    ).with_columns(pl.col("event_time").fill_nan(None).cast(pl.Int64))


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    """Small: the general path refits linearmodels once per cluster for the jackknife."""
    return make_event_panel(11, units=(3, 8), T=20)


@pytest.fixture(scope="module")
def aggregated(panel: pl.DataFrame):
    return event_study(panel, **COLS)


def test_aggregated_equals_general(panel: pl.DataFrame, aggregated) -> None:
    g = event_study(panel, **COLS, path="general", cv3=False)  # the general jackknife is checked in test_twfe
    a = aggregated
    assert a.path == "aggregated" and g.path == "general"
    np.testing.assert_array_equal(a.event_times, g.event_times)
    assert -1 not in a.event_times
    assert rel(g.estimate, a.estimate) < 1e-8
    assert rel(g.std_error, a.std_error) < 1e-8
    assert rel(g.vcov, a.vcov) < 1e-6  # off-diagonal elements near zero get a looser relative check
    np.testing.assert_allclose(g.vcov, a.vcov, rtol=1e-8, atol=1e-12)
    assert (a.n_clusters, a.n_treated_clusters, a.df) == (31, 6, 30)


def test_aggregated_equals_pyfixest(panel: pl.DataFrame, aggregated) -> None:
    pf = pytest.importorskip("pyfixest")
    a = aggregated
    names = [f"ev_m{-e}" if e < 0 else f"ev_p{e}" for e in a.event_times]
    data = panel.with_columns(
        (pl.col("event_time") == int(e)).fill_null(False).cast(pl.Float64).alias(nm) for e, nm in zip(a.event_times, names)
    ).to_pandas()
    fit = pf.feols(f"y ~ {' + '.join(names)} | unit + time", data=data, vcov={"CRV1": "cluster"})
    assert rel(a.estimate, fit.coef()[names].to_numpy()) < 1e-10
    assert rel(a.std_error, fit.se()[names].to_numpy()) < 1e-10
    # pyfixest loses relative precision in p-values near 1e-11, hence the absolute tolerance
    np.testing.assert_allclose(a.p_value, fit.pvalue()[names].to_numpy(), rtol=1e-7, atol=1e-12)
    V = np.asarray(fit._vcov)
    np.testing.assert_allclose(a.vcov, V, rtol=1e-9, atol=1e-14)


def test_pretrend_test_is_the_wald_test_of_the_leads(aggregated) -> None:
    a = aggregated
    w = a.pretrend_test()
    lead = a.event_times < -1
    L = int(lead.sum())
    b = a.estimate[lead]
    W = b @ np.linalg.inv(a.vcov[np.ix_(lead, lead)]) @ b
    assert (w.df_num, w.df_denom) == (L, 30)
    assert rel(w.wald, W) < 1e-10 and rel(w.statistic, W / L) < 1e-10
    assert rel(w.p_value, stats.f.sf(W / L, L, 30)) < 1e-10
    assert w.restrictions == tuple(int(e) for e in a.event_times[lead])


def test_event_study_cells_and_tidy(panel: pl.DataFrame, aggregated) -> None:
    cells = cells_from_panel(panel.with_columns(d=pl.lit(0.0)), unit="unit", time="time", outcome="y", treatment="d", cluster="cluster")
    E = panel.group_by("cluster", "time").agg(pl.col("event_time").first()).sort("cluster", "time")
    E = E["event_time"].cast(pl.Float64).fill_null(np.nan).to_numpy().reshape(cells.n_clusters, cells.n_periods)
    r = event_study_cells(cells, E, cv3=False)
    assert rel(r.estimate, aggregated.estimate) < 1e-12
    t = aggregated.tidy()
    assert t.height == len(aggregated.event_times)
    assert t["event_time"].to_list() == aggregated.event_times.tolist()
    assert {"estimate", "std_error", "ci_low", "ci_high", "std_error_cv3", "p_value_cv3", "path"} <= set(t.columns)


def test_unbalanced_falls_back_and_aggregated_raises(panel: pl.DataFrame) -> None:
    unb = panel.filter(~((pl.col("unit") == 3) & (pl.col("time") == 0)))
    r = event_study(unb, **COLS, cv3=False)
    assert r.path == "general" and "unbalanced" in r.fallback_reason
    with pytest.raises(ValueError, match="unbalanced"):
        event_study(unb, **COLS, path="aggregated")


def test_recovers_the_planted_effect() -> None:
    """Effect 1 + 0.1 e from e = 0 on: the interval of e = 0 covers 1, the leads are small.

    No assertion on the pretrend p-value of one draw: with 6 treated clusters the
    CRV1 Wald test over-rejects (about 23% at the 5% level with 3 leads in 100
    draws of this design), as MacKinnon and Webb describe for few treated clusters.
    """
    r = event_study(make_event_panel(12, units=(20, 40), staggered=False), **COLS, cv3=False)
    e0 = int(np.flatnonzero(r.event_times == 0)[0])
    assert r.ci_low[e0] < 1.0 < r.ci_high[e0]
    assert np.all(np.abs(r.estimate[r.event_times < -1]) < 0.6)
    assert np.all(r.estimate[r.event_times >= 0] > 0.5)


def test_cv3_equals_brute_force_leave_one_cluster_out(panel: pl.DataFrame, aggregated) -> None:
    """Jackknife from the cells equals re-estimating on the panel without each cluster."""
    G = panel["cluster"].n_unique()
    loo = np.full((G, len(aggregated.event_times)), np.nan)
    for k, c in enumerate(panel["cluster"].unique().sort()):
        r = event_study(panel.filter(pl.col("cluster") != c), **COLS, cv3=False)
        pos = np.searchsorted(aggregated.event_times, r.event_times)
        loo[k, pos] = r.estimate
    se = np.sqrt((G - 1) / G * np.sum((loo - loo.mean(axis=0)) ** 2, axis=0))
    np.testing.assert_array_equal(np.isnan(se), np.isnan(aggregated.std_error_cv3))
    ok = ~np.isnan(se)
    assert ok.sum() > 5
    assert rel(aggregated.std_error_cv3[ok], se[ok]) < 1e-8
