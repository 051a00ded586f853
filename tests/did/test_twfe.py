"""TWFE: the aggregated path equals the dummy regression, pyfixest and linearmodels."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

from pipeline.did.panel import NotAggregable, cells_from_panel, cells_from_sums
from pipeline.did.results import count_params, small_sample_factor
from pipeline.did.twfe import twfe, twfe_cells

COLS = dict(unit="unit", time="time", outcome="y", treatment="d", cluster="cluster")


def make_panel(seed: int, *, G: int = 31, units: tuple[int, int] = (5, 40), T: int = 36) -> pl.DataFrame:
    """Balanced person x month panel, units nested in G clusters.

    y_it = a_i + g_t + u_gt + tau_gt D_gt + e_it with a_i, g_t, u_gt, e_it normal.
    Six clusters are treated from staggered starts; the last of them is treated
    for 12 periods only (its treatment turns off). The effect is heterogeneous:
    tau_gt = 1 + 0.5 * cluster effect + 0.05 * (t - start).
    """
    rng = np.random.default_rng(seed)
    n = rng.integers(units[0], units[1] + 1, size=G)
    D = np.zeros((G, T))
    starts = rng.integers(T // 4, 3 * T // 4, size=6)
    for k, s in enumerate(starts):
        D[k, s:] = 1
    D[5, :] = 0
    D[5, T // 4 : T // 4 + 12] = 1
    tau = 1 + 0.5 * rng.normal(size=(G, 1)) + 0.05 * (np.arange(T)[None, :] - T / 2)
    g_t = rng.normal(size=T)
    u_gt = 0.3 * rng.normal(size=(G, T))
    cl = np.repeat(np.arange(G), n)
    U = len(cl)
    a_i = rng.normal(size=U) * 2
    y = a_i[:, None] + g_t[None, :] + u_gt[cl] + (tau * D)[cl] + rng.normal(size=(U, T))
    return pl.DataFrame(
        {
            "unit": np.repeat(np.arange(U), T),
            "time": np.tile(np.arange(T), U),
            "cluster": np.repeat(cl, T).astype(str),
            "d": D[cl].ravel(),
            "y": y.ravel(),
        }
    ).with_columns(pl.col("cluster").str.pad_start(3, "c"))


def dummy_regression(df: pl.DataFrame) -> float:
    """beta of d from numpy lstsq on [d, unit dummies, time dummies (first dropped)]."""
    u = df["unit"].rank("dense").to_numpy().astype(int) - 1
    t = df["time"].rank("dense").to_numpy().astype(int) - 1
    N = df.height
    Xu = np.zeros((N, u.max() + 1))
    Xu[np.arange(N), u] = 1
    Xt = np.zeros((N, t.max() + 1))
    Xt[np.arange(N), t] = 1
    X = np.column_stack([df["d"].to_numpy(), Xu, Xt[:, 1:]])
    return float(np.linalg.lstsq(X, df["y"].to_numpy(), rcond=None)[0][0])


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture(scope="module")
def big_panel() -> pl.DataFrame:
    return make_panel(1)


@pytest.fixture(scope="module")
def panel() -> pl.DataFrame:
    """Smaller, for the tests that run linearmodels once per cluster (the general-path jackknife)."""
    return make_panel(5, units=(5, 15), T=24)


@pytest.fixture(scope="module")
def small_panel() -> pl.DataFrame:
    return make_panel(2, units=(2, 4), T=24)


def test_aggregated_equals_dummy_regression(small_panel: pl.DataFrame) -> None:
    r = twfe(small_panel, **COLS)
    assert r.path == "aggregated" and r.fallback_reason is None
    assert rel(r.estimate, dummy_regression(small_panel)) < 1e-8


def test_aggregated_equals_pyfixest(big_panel: pl.DataFrame) -> None:
    pf = pytest.importorskip("pyfixest")
    panel = big_panel
    r = twfe(panel, **COLS)
    fit = pf.feols("y ~ d | unit + time", data=panel.to_pandas(), vcov={"CRV1": "cluster"})
    assert rel(r.estimate, fit.coef()["d"]) < 1e-10
    assert rel(r.std_error, fit.se()["d"]) < 1e-10
    assert rel(r.p_value, fit.pvalue()["d"]) < 1e-8
    ci = fit.confint(alpha=0.05).loc["d"].to_numpy()
    assert rel(r.ci_low, ci[0]) < 1e-8 and rel(r.ci_high, ci[1]) < 1e-8
    assert r.df == 30 and r.n_clusters == 31 and r.n_treated_clusters == 6
    assert r.n_obs == panel.height and r.n_units == panel["unit"].n_unique()


def test_small_sample_k_counts_all_time_levels(panel: pl.DataFrame) -> None:
    """pyfixest's default counts K = 1 + T (not T - 1) when units are nested in clusters."""
    pf = pytest.importorskip("pyfixest")
    fit = pf.feols("y ~ d | unit + time", data=panel.to_pandas(), vcov={"CRV1": "cluster"})
    T, U = panel["time"].n_unique(), panel["unit"].n_unique()
    K = count_params(n_regressors=1, n_units=U, n_periods=T, units_nested=True)
    assert K == 1 + T
    c = small_sample_factor(n_obs=panel.height, n_params=K, n_clusters=31)
    assert rel(float(np.ravel(fit._ssc)[0]), c) < 1e-12


def test_general_equals_aggregated(panel: pl.DataFrame) -> None:
    a = twfe(panel, **COLS)
    g = twfe(panel, **COLS, path="general")
    assert g.path == "general" and g.fallback_reason is None
    for f in ("estimate", "std_error", "p_value", "ci_low", "ci_high", "std_error_cv3", "p_value_cv3"):
        assert rel(getattr(g, f), getattr(a, f)) < 1e-8, f
    assert (g.n_obs, g.n_units, g.n_clusters, g.n_treated_clusters) == (a.n_obs, a.n_units, a.n_clusters, a.n_treated_clusters)


def test_pandas_input_gives_the_same(panel: pl.DataFrame) -> None:
    a = twfe(panel, **COLS, cv3=False)
    b = twfe(panel.to_pandas(), **COLS, cv3=False)
    assert a.estimate == b.estimate and a.std_error == b.std_error


def test_two_by_two_is_difference_of_cell_means() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for g in range(8):
        treated = g < 3
        for i in range(rng.integers(3, 9)):
            base = rng.normal()
            for t in (0, 1):
                rows.append((f"{g}-{i}", t, g, float(treated and t == 1), base + t + 2.5 * (treated and t == 1) + rng.normal()))
    df = pl.DataFrame(rows, schema=["unit", "time", "cluster", "d", "y"], orient="row")
    m = df.with_columns(tr=pl.col("cluster") < 3).group_by("tr", "time").agg(pl.col("y").mean())
    cell = {(r["tr"], r["time"]): r["y"] for r in m.iter_rows(named=True)}
    did = (cell[True, 1] - cell[True, 0]) - (cell[False, 1] - cell[False, 0])
    r = twfe(df, **COLS)
    assert r.path == "aggregated"
    assert rel(r.estimate, did) < 1e-12


def test_unbalanced_panel_falls_back(panel: pl.DataFrame) -> None:
    pf = pytest.importorskip("pyfixest")
    rng = np.random.default_rng(4)
    unb = panel.filter(pl.Series(rng.random(panel.height) > 0.05))
    r = twfe(unb, **COLS)
    assert r.path == "general"
    assert "unbalanced" in r.fallback_reason
    with pytest.raises(ValueError, match="unbalanced"):
        twfe(unb, **COLS, path="aggregated")
    with pytest.raises(NotAggregable):
        cells_from_panel(unb, **COLS)
    fit = pf.feols("y ~ d | unit + time", data=unb.to_pandas(), vcov={"CRV1": "cluster"})
    assert rel(r.estimate, fit.coef()["d"]) < 1e-8
    assert rel(r.std_error, fit.se()["d"]) < 1e-8


def test_units_moving_between_clusters_fall_back_and_count_unit_effects(panel: pl.DataFrame) -> None:
    """When units are not nested in clusters, K = 1 + U + T - 1, as pyfixest counts it."""
    pf = pytest.importorskip("pyfixest")
    movers = panel.with_columns(
        pl.when((pl.col("unit") % 50 == 0) & (pl.col("time") >= 20)).then(pl.lit("c000")).otherwise(pl.col("cluster")).alias("cluster")
    ).with_columns(pl.col("d").max().over("cluster", "time"))
    r = twfe(movers, **COLS, cv3=False)
    assert r.path == "general" and "nested" in r.fallback_reason
    fit = pf.feols("y ~ d | unit + time", data=movers.to_pandas(), vcov={"CRV1": "cluster"})
    assert rel(r.estimate, fit.coef()["d"]) < 1e-8
    assert rel(r.std_error, fit.se()["d"]) < 1e-8


def test_duplicates_and_varying_treatment_are_not_aggregable(panel: pl.DataFrame) -> None:
    dup = pl.concat([panel, panel.head(1)])
    with pytest.raises(NotAggregable, match="duplicate"):
        cells_from_panel(dup, **COLS)
    varying = panel.with_columns(pl.when(pl.col("unit") == 0).then(1.0).otherwise(pl.col("d")).alias("d"))
    with pytest.raises(NotAggregable, match="constant within cluster"):
        cells_from_panel(varying, **COLS)
    assert twfe(varying, **COLS, cv3=False).path == "general"


def test_cv3_equals_brute_force_leave_one_cluster_out(small_panel: pl.DataFrame) -> None:
    r = twfe(small_panel, **COLS)
    clusters = small_panel["cluster"].unique().sort()
    loo = np.array([dummy_regression(small_panel.filter(pl.col("cluster") != c)) for c in clusters])
    G = len(loo)
    se = np.sqrt((G - 1) / G * np.sum((loo - loo.mean()) ** 2))
    assert rel(r.std_error_cv3, se) < 1e-8
    from scipy import stats

    assert rel(r.p_value_cv3, 2 * stats.t.sf(abs(r.estimate / se), G - 1)) < 1e-8


def test_cells_from_sums_of_a_duckdb_group_by(panel: pl.DataFrame) -> None:
    con = duckdb.connect()
    con.register("panel", panel)
    sums = con.sql(
        "select cluster, time, sum(y) as s, count(*) as n, max(d) as d from panel group by cluster, time"
    ).pl()
    cells = cells_from_sums(sums, cluster="cluster", time="time", sum_col="s", n_col="n", treatment="d")
    direct = cells_from_panel(panel, **COLS)
    np.testing.assert_array_equal(cells.n, direct.n)
    np.testing.assert_allclose(cells.sums, direct.sums, rtol=1e-9, atol=1e-9)
    a, b = twfe_cells(cells), twfe(panel, **COLS)
    assert rel(a.estimate, b.estimate) < 1e-10 and rel(a.std_error, b.std_error) < 1e-10
    with pytest.raises(ValueError, match="rows"):
        cells_from_sums(sums.slice(1), cluster="cluster", time="time", sum_col="s", n_col="n", treatment="d")


def test_tidy_and_path_validation(panel: pl.DataFrame) -> None:
    r = twfe(panel, **COLS, cv3=False)
    t = r.tidy()
    assert t.height == 1
    assert {"estimate", "std_error", "p_value", "ci_low", "ci_high", "std_error_cv3", "df", "path"} <= set(t.columns)
    assert t["path"][0] == "aggregated" and t["df"][0] == 30
    with pytest.raises(ValueError, match="path"):
        twfe(panel, **COLS, path="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="missing"):
        twfe(panel.drop("d"), **COLS)


SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "data"


def staggered_unit_panel(seed: int, *, units: int = 60, T: int = 8, drop: float = 0.0) -> pl.DataFrame:
    """A panel clustered by its own units: y_it = a_i + g_t + 0.4 D_it + e_it, three adoption cohorts and
    never-treated units; ``drop`` removes that share of rows at random (unbalanced)."""
    rng = np.random.default_rng(seed)
    start = rng.choice([3, 5, 6, 99], size=units)
    i, t = np.repeat(np.arange(units), T), np.tile(np.arange(T), units)
    d = (t >= start[i]).astype(float)
    y = rng.normal(size=units)[i] + 0.2 * t + 0.4 * d + rng.normal(size=units * T)
    df = pl.DataFrame({"id": i, "year": t + 2000, "d": d, "y": y})
    return df.filter(pl.Series(rng.random(df.height) >= drop)) if drop else df


@pytest.mark.parametrize("drop", [0.0, 0.15])
@pytest.mark.parametrize("path", ["auto", "general"])
def test_cluster_equal_to_unit_equals_pyfixest(drop: float, path: str) -> None:
    """twfe(..., unit="id", cluster="id") runs (it raised a polars DuplicateError) and equals fixest's CRV1."""
    pf = pytest.importorskip("pyfixest")
    df = staggered_unit_panel(11, drop=drop)
    r = twfe(df, unit="id", time="year", outcome="y", treatment="d", cluster="id", path=path)
    assert r.path == ("aggregated" if path == "auto" and drop == 0 else "general")
    ref = pf.feols("y ~ d | id + year", data=df.to_pandas(), vcov={"CRV1": "id"})
    assert r.estimate == pytest.approx(float(ref.coef().iloc[0]), rel=1e-9, abs=1e-12)
    assert r.std_error == pytest.approx(float(ref.se().iloc[0]), rel=1e-8)
    assert r.p_value == pytest.approx(float(ref.pvalue().iloc[0]), rel=1e-6)


def test_mpdta_equals_fixest() -> None:
    """R did's mpdta, counties clustered by themselves: fixest gives -0.036549 (SE 0.013265)."""
    path = SHARED_DATA / "mpdta.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    m = pl.read_csv(path).with_columns(
        ((pl.col("treat") == 1) & (pl.col("year") >= pl.col("first.treat"))).cast(pl.Int64).alias("d"))
    r = twfe(m, unit="countyreal", time="year", outcome="lemp", treatment="d", cluster="countyreal")
    assert (round(r.estimate, 6), round(r.std_error, 6)) == (-0.036549, 0.013265)
