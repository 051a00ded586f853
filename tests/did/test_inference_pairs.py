"""Every estimator x inference pair of ``pipeline.did`` against an independent computation.

The independent computations are dense regressions with explicit dummies
(numpy least squares), the estimators' formulas evaluated by hand on cell means,
brute-force enumeration of all sign vectors or assignments, and peers (pyfixest,
diff-diff). The panels are not the pilot's: units clustered by themselves,
staggered adoption, unbalanced.
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from pipeline import did

RTOL = 1e-10


# ------------------------------------------------------------------ panels
def staggered(seed: int, *, units: int = 9, T: int = 6, starts: tuple[int, ...] = (3, 3, 4),
              drop: int = 0, clusters: int | None = None) -> pl.DataFrame:
    """y_it = a_i + 0.1 t + 0.5 D_it + e_it; the first units start at ``starts``, the rest never;
    ``clusters`` groups units into that many clusters (units of a cluster share its start), else each
    unit is its own cluster; ``drop`` removes that many rows of never-treated units (unbalanced)."""
    rng = np.random.default_rng(seed)
    G = clusters or units
    g_of = np.arange(units) % G
    start = np.full(G, 99)
    start[: len(starts)] = starts
    i, t = np.repeat(np.arange(units), T), np.tile(np.arange(T), units)
    d = (t >= start[g_of[i]]).astype(int)
    y = rng.normal(size=units)[i] + 0.1 * t + 0.5 * d + rng.normal(size=units * T)
    df = pl.DataFrame({"id": i, "g": g_of[i], "t": t, "d": d, "y": y})
    if drop:
        never = df.filter(pl.col("g") >= len(starts))
        gone = never.sample(drop, seed=seed).select("id", "t")
        df = df.join(gone, on=["id", "t"], how="anti")
    return df.sort("id", "t")


def panel(df: pl.DataFrame, cluster: str = "id") -> did.Panel:
    return did.Panel(df, unit="id", time="t", cluster=cluster, treatment="d")


# --------------------------------------------------- dense reference fits
def dummies(codes: np.ndarray, drop_first: bool = False) -> np.ndarray:
    levels = np.unique(codes)
    return (codes[:, None] == levels[None, 1 if drop_first else 0:]).astype(float)


def dense(df: pl.DataFrame, y: np.ndarray, X: np.ndarray, cluster: str = "id",
          unit: str = "id") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(beta, raw CRV1 t, residual) of y on X with unit and period dummies, by least squares."""
    X = X.reshape(len(y), -1)
    FE = np.column_stack([dummies(df[unit].to_numpy()), dummies(df["t"].to_numpy(), drop_first=True)])
    Z = np.column_stack([X, FE])
    coef = np.linalg.lstsq(Z, y, rcond=None)[0]
    resid = y - Z @ coef
    Xt = X - FE @ np.linalg.lstsq(FE, X, rcond=None)[0]
    A = np.linalg.inv(Xt.T @ Xt)
    g = df[cluster].to_numpy()
    S = np.array([Xt[g == h].T @ resid[g == h] for h in np.unique(g)])
    V = A @ S.T @ S @ A
    return coef[: X.shape[1]], coef[: X.shape[1]] / np.sqrt(np.diag(V)), resid


def restricted_fitted(df: pl.DataFrame, b0: float, unit: str = "id") -> tuple[np.ndarray, np.ndarray]:
    """Fitted values and residuals of y - b0 D on the unit and period dummies, plus b0 D back in the fit."""
    y, d = df["y"].to_numpy(), df["d"].to_numpy().astype(float)
    FE = np.column_stack([dummies(df[unit].to_numpy()), dummies(df["t"].to_numpy(), drop_first=True)])
    r = y - b0 * d
    u = r - FE @ np.linalg.lstsq(FE, r, rcond=None)[0]
    return y - u, u


def signs(G: int) -> np.ndarray:
    return np.array(list(itertools.product([-1.0, 1.0], repeat=G)))


def cluster_index(df: pl.DataFrame, cluster: str) -> np.ndarray:
    return (df[cluster].rank("dense").cast(pl.Int64) - 1).to_numpy()


def design_assignments(df: pl.DataFrame, cluster: str) -> list[np.ndarray]:
    """Every reassignment of the treated clusters' paths to distinct clusters, as (G, T) arrays."""
    g, t = cluster_index(df, cluster), df["t"].to_numpy()
    G, T = g.max() + 1, t.max() + 1
    treat = np.zeros((G, T))
    treat[g, t] = df["d"].to_numpy()
    paths = [treat[k] for k in range(G) if treat[k].any()]
    out = set()
    for chosen in itertools.permutations(range(G), len(paths)):
        a = np.zeros((G, T))
        for k, p in zip(chosen, paths):
            a[k] = p
        out.add(a.tobytes())
    return [np.frombuffer(b).reshape(G, T) for b in sorted(out)]


def with_treatment(df: pl.DataFrame, treat: np.ndarray, cluster: str) -> pl.DataFrame:
    return df.with_columns(pl.Series("d", treat[cluster_index(df, cluster), df["t"].to_numpy()]))


# ---------------------------------------------------------------- twfe
CASES = {
    "cluster=unit, balanced": dict(df=lambda: staggered(1), cluster="id", path="aggregated"),
    "cluster=unit, unbalanced": dict(df=lambda: staggered(2, drop=4), cluster="id", path="general"),
    "clusters of units, unbalanced": dict(df=lambda: staggered(3, units=16, clusters=8, starts=(3, 4), drop=3),
                                          cluster="g", path="general"),
}


@pytest.mark.parametrize("case", CASES)
def test_twfe_cv3_equals_brute_force_jackknife(case: str) -> None:
    c = CASES[case]
    df = c["df"]()
    fit = did.twfe(panel(df, c["cluster"]), "y")
    assert fit.path == c["path"]
    leave = [dense(sub, sub["y"].to_numpy(), sub["d"].to_numpy().astype(float), c["cluster"])[0][0]
             for h in df[c["cluster"]].unique().sort()
             if (sub := df.filter(pl.col(c["cluster"]) != h))["d"].sum() > 0]
    G = len(leave)
    se = np.sqrt((G - 1) / G * np.sum((np.array(leave) - np.mean(leave)) ** 2))
    cv3 = fit.cv3()
    assert cv3.statistic == pytest.approx(fit.result.estimate / se, rel=1e-7)


@pytest.mark.parametrize("restricted", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_twfe_wild_bootstrap_equals_enumerated_dense_refits(case: str, restricted: bool) -> None:
    """All 2^G Rademacher sign vectors: y* = fit + w_g u, refitted by least squares, |t*| >= |t|."""
    c = CASES[case]
    df = c["df"]()
    cl = c["cluster"]
    G = df[cl].n_unique()
    fit = did.twfe(panel(df, cl), "y")
    res = fit.wild_bootstrap(restricted=restricted, weights="rademacher", draws=2**G)
    assert res.exact and res.draws == 2**G
    beta, t_obs, _ = dense(df, df["y"].to_numpy(), df["d"].to_numpy().astype(float), cl)
    b0 = 0.0 if restricted else beta[0]
    yhat, u = restricted_fitted(df, b0)
    g = cluster_index(df, cl)
    d = df["d"].to_numpy().astype(float)
    t_star = np.array([(lambda b, t: t[0] * (1 - b0 / b[0]))(*dense(df, yhat + w[g] * u, d, cl)[:2])
                       for w in signs(G)])
    assert res.p_value == pytest.approx(np.mean(np.abs(t_star) >= abs(t_obs[0]) * (1 - RTOL)), abs=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_twfe_randomization_equals_enumerated_dense_refits(case: str) -> None:
    c = CASES[case]
    df, cl = c["df"](), c["cluster"]
    fit = did.twfe(panel(df, cl), "y")
    res = fit.randomization_test()
    t_obs = abs(dense(df, df["y"].to_numpy(), df["d"].to_numpy().astype(float), cl)[1][0])
    ts = []
    for a in design_assignments(df, cl):
        sub = with_treatment(df, a, cl)
        ts.append(abs(dense(sub, sub["y"].to_numpy(), sub["d"].to_numpy().astype(float), cl)[1][0]))
    assert res.exact and res.draws == len(ts)
    assert res.p_value == pytest.approx(np.mean(np.array(ts) >= t_obs * (1 - RTOL)), abs=1e-12)
    # the interval inverts the same test: just inside it the test does not reject, just outside it does
    for end, sign in ((res.ci_low, -1), (res.ci_high, 1)):
        for step, rejects in ((-1e-3, False), (1e-3, True)):
            b0 = end + sign * step * abs(end)
            shifted = df.with_columns(pl.col("y") - b0 * pl.col("d"))
            t0 = abs(dense(shifted, shifted["y"].to_numpy(), df["d"].to_numpy().astype(float), cl)[1][0])
            tb = [abs(dense(s, shifted["y"].to_numpy(), s["d"].to_numpy().astype(float), cl)[1][0])
                  for a in design_assignments(df, cl) for s in [with_treatment(shifted, a, cl)]]
            assert (np.mean(np.array(tb) >= t0 * (1 - RTOL)) <= fit.alpha) == rejects


def test_twfe_general_path_bootstrap_and_randomization_equal_the_aggregated_ones() -> None:
    """Two algorithms, one answer: the demeaned-rows engine and the cluster x period sums on a balanced panel."""
    df = staggered(4, units=20, clusters=10, starts=(2, 3, 3))
    agg, gen = (did.twfe(panel(df, "g"), "y", path=p) for p in ("auto", "general"))
    assert (agg.path, gen.path) == ("aggregated", "general")
    for kw in ({"restricted": True}, {"restricted": False}, {"weights": "rademacher"}):
        a, b = agg.wild_bootstrap(draws=999, seed=5, **kw), gen.wild_bootstrap(draws=999, seed=5, **kw)
        assert a.p_value == b.p_value
        assert (a.ci_low, a.ci_high) == pytest.approx((b.ci_low, b.ci_high), rel=1e-5)
    a, b = agg.randomization_test(), gen.randomization_test()
    assert a.p_value == b.p_value and a.draws == b.draws
    assert (a.ci_low, a.ci_high) == pytest.approx((b.ci_low, b.ci_high), rel=1e-3)


# --------------------------------------------------------- event study
def event_panel(seed: int) -> pl.DataFrame:
    return staggered(seed, units=8, T=7, starts=(3, 3, 4, 5))


def event_dense(df: pl.DataFrame, y: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first = df.group_by("id").agg(pl.col("t").filter(pl.col("d") == 1).min().alias("f"))
    e = df.join(first, on="id", how="left").select((pl.col("t") - pl.col("f")).alias("e"))["e"].to_numpy()
    e = np.where(np.isnan(e.astype(float)), np.inf, e)
    return dense(df, y, np.column_stack([(e == k).astype(float) for k in levels]))


def test_event_study_cv3_equals_brute_force_jackknife() -> None:
    """Leave each cluster out and refit densely; an event time nobody else reaches is not identified (NaN)."""
    df = event_panel(7)
    fit = did.event_study(panel(df), "y")
    levels = fit.result.event_times
    B = np.full((df["id"].n_unique(), len(levels)), np.nan)
    for k, h in enumerate(df["id"].unique().sort()):
        sub = df.filter(pl.col("id") != h)
        first = sub.group_by("id").agg(pl.col("t").filter(pl.col("d") == 1).min().alias("f"))
        e = sub.join(first, on="id", how="left").select((pl.col("t") - pl.col("f")).alias("e"))["e"].to_numpy()
        seen = np.array([np.any(e.astype(float) == lv) for lv in levels])
        B[k, seen] = event_dense(sub, sub["y"].to_numpy(), levels[seen])[0]
    G = len(B)
    se = np.sqrt((G - 1) / G * ((B - B.mean(axis=0)) ** 2).sum(axis=0))
    np.testing.assert_allclose(fit.cv3().table["std_error"].to_numpy(), se, rtol=1e-7)


def test_event_study_sup_t_band_equals_enumerated_dense_refits() -> None:
    """WCU: y* = yhat + w_g uhat for all 2^G sign vectors, refitted densely; the band's critical value is the
    quantile of max_k |t*_k| and the joint p-value the share of maxima above the observed one."""
    df = event_panel(8)
    G = df["id"].n_unique()
    fit = did.event_study(panel(df), "y")
    res = fit.wild_bootstrap(weights="rademacher", draws=2**G)
    levels = fit.result.event_times
    y = df["y"].to_numpy()
    beta, t_obs, resid = event_dense(df, y, levels)
    g = cluster_index(df, "id")
    sups = []
    for w in signs(G):
        b, t, _ = event_dense(df, y - resid + w[g] * resid, levels)
        sups.append(np.max(np.abs(t * (1 - beta / b))))
    sups = np.array(sups)
    q = np.quantile(sups, 0.95)
    se = fit.result.std_error
    np.testing.assert_allclose(res.table["ci_high"].to_numpy(), beta + q * se / np.sqrt(fit.result.ssc), rtol=1e-7)
    assert res.p_value == pytest.approx(np.mean(sups >= np.max(np.abs(t_obs)) * (1 - RTOL)), abs=1e-12)


def test_event_study_sup_t_band_on_an_unbalanced_panel_equals_enumerated_dense_refits() -> None:
    """The general path (rows missing): the same enumeration, refitted densely."""
    df = staggered(8, units=8, T=7, starts=(3, 3, 4, 5), drop=3)
    G = df["id"].n_unique()
    fit = did.event_study(panel(df), "y")
    assert fit.path == "general"
    res = fit.wild_bootstrap(weights="rademacher", draws=2**G)
    levels = fit.result.event_times
    y = df["y"].to_numpy()
    beta, t_obs, resid = event_dense(df, y, levels)
    np.testing.assert_allclose(beta, fit.result.estimate, rtol=1e-8)
    g = cluster_index(df, "id")
    sups = np.array([np.max(np.abs((lambda b, t: t * (1 - beta / b))(*event_dense(df, y - resid + w[g] * resid,
                                                                                   levels)[:2])))
                     for w in signs(G)])
    q = np.quantile(sups, 0.95)
    se = fit.result.std_error
    np.testing.assert_allclose(res.table["ci_low"].to_numpy(), beta - q * se / np.sqrt(fit.result.ssc), rtol=1e-7)
    assert res.p_value == pytest.approx(np.mean(sups >= np.max(np.abs(t_obs)) * (1 - RTOL)), abs=1e-12)


def test_event_study_sup_t_band_is_the_same_on_both_paths() -> None:
    df = staggered(17, units=12, T=7, starts=(3, 3, 4, 5))
    agg, gen = (did.event_study(panel(df), "y", path=p) for p in ("auto", "general"))
    assert (agg.path, gen.path) == ("aggregated", "general")
    a, b = agg.wild_bootstrap(draws=999, seed=2), gen.wild_bootstrap(draws=999, seed=2)
    assert a.p_value == b.p_value
    np.testing.assert_allclose(a.table["ci_high"].to_numpy(), b.table["ci_high"].to_numpy(), rtol=1e-8)


def test_event_study_lead_randomization_equals_dense_refits_of_the_same_permutations() -> None:
    df = staggered(9, units=10, T=8, starts=(4, 4, 5, 6))
    fit = did.event_study(panel(df), "y")
    res = fit.randomization_test(draws=60, seed=3)
    # the lead test: the periods before the first start, schedules permuted across clusters (seeded as documented)
    pre = df.filter(pl.col("t") < 4)
    G = df["id"].n_unique()
    first = df.group_by("id").agg(pl.col("t").filter(pl.col("d") == 1).min().alias("f")).sort("id")["f"].to_numpy()
    rng = np.random.default_rng(3)
    perms = [np.arange(G)] + [rng.permutation(G) for _ in range(60)]
    walds = []
    for perm in perms:
        f = first[perm]
        e = pre["t"].to_numpy() - f[pre["id"].to_numpy()].astype(float)
        levels = np.unique(e[np.isfinite(e)])
        levels = levels[levels != -1]
        X = np.column_stack([(e == k).astype(float) for k in levels])
        Xr = X - np.column_stack([dummies(pre["id"].to_numpy()), dummies(pre["t"].to_numpy(), True)]) @ \
            np.linalg.lstsq(np.column_stack([dummies(pre["id"].to_numpy()), dummies(pre["t"].to_numpy(), True)]),
                            X, rcond=None)[0]
        b, _, r = dense(pre, pre["y"].to_numpy(), X)
        A = np.linalg.inv(Xr.T @ Xr)
        gi = pre["id"].to_numpy()
        S = np.array([Xr[gi == h].T @ r[gi == h] for h in np.unique(gi)])
        V = A @ S.T @ S @ A
        walds.append(float(b @ np.linalg.solve(V, b)))
    walds = np.array(walds)
    assert res.p_value == pytest.approx((1 + np.sum(walds[1:] >= walds[0] * (1 - 1e-12))) / 61, abs=1e-12)


# ------------------------------------------------------- clean controls
def cc_by_hand(df: pl.DataFrame, cluster: str = "id") -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The clean-control ATT from cluster x period means, with each cluster's contribution and weight."""
    cells = df.group_by(cluster, "t").agg(pl.col("y").sum().alias("s"), pl.len().alias("n"),
                                          pl.col("d").max().alias("d")).sort(cluster, "t")
    G, T = cells[cluster].n_unique(), cells["t"].n_unique()
    S, n, D = (cells[c].to_numpy().reshape(G, T).astype(float) for c in ("s", "n", "d"))
    n = n[:, 0]
    treated = D.any(axis=1)
    mean = S / n[:, None]
    control_mean = S[~treated].sum(axis=0) / n[~treated].sum()
    W = sum(n[g] * D[g].sum() for g in np.flatnonzero(treated))
    a, weight = np.zeros(G), np.zeros(G)
    for g in np.flatnonzero(treated):
        post = D[g] == 1
        pre = np.arange(T) < np.argmax(post)
        a[g] = n[g] * np.sum(mean[g, post] - mean[g, pre].mean()) / W
        weight[g] = n[g] * post.sum() / W
        for c in np.flatnonzero(~treated):
            a[c] -= n[g] * n[c] / n[~treated].sum() * np.sum(mean[c, post] - mean[c, pre].mean()) / W
    weight[~treated] = n[~treated] / n[~treated].sum()
    assert np.isclose(a.sum(), sum(n[g] * np.sum(mean[g, D[g] == 1] - mean[g, np.arange(T) < np.argmax(D[g])].mean()
                                                   - control_mean[D[g] == 1]
                                                   + control_mean[np.arange(T) < np.argmax(D[g])].mean())
                                   for g in np.flatnonzero(treated)) / W)
    return float(a.sum()), a, weight, treated


def cc_t(df: pl.DataFrame, b0: float = 0.0, cluster: str = "id") -> float:
    theta, a, weight, treated = cc_by_hand(df, cluster)
    G = len(a)
    var = 0.0
    for part in (treated, ~treated):
        var += np.sum((a[part] - weight[part] * a[part].sum()) ** 2)
    return (theta - b0) / np.sqrt(G / (G - 1) * var)


def cc_panel(seed: int) -> pl.DataFrame:
    return staggered(seed, units=8, T=6, starts=(3, 3, 4))


def test_clean_controls_estimate_and_cv3_equal_the_formula_by_hand() -> None:
    df = cc_panel(10)
    fit = did.clean_controls(panel(df), "y")
    assert fit.result.estimate == pytest.approx(cc_by_hand(df)[0], rel=1e-12)
    assert fit.result.t_stat == pytest.approx(cc_t(df), rel=1e-10)
    leave = np.array([cc_by_hand(df.filter(pl.col("id") != h))[0] for h in range(8)])
    se = np.sqrt(7 / 8 * np.sum((leave - leave.mean()) ** 2))
    assert fit.cv3().statistic == pytest.approx(fit.result.estimate / se, rel=1e-10)


@pytest.mark.parametrize("restricted", [True, False])
def test_clean_controls_wild_bootstrap_equals_enumerated_person_level_draws(restricted: bool) -> None:
    """y* = y - u + w_g u with u the person-level residuals of the two-way model with b0 imposed (WCR: 0,
    WCU: the estimate), the estimator and its variance recomputed by hand for all 2^G sign vectors."""
    df = cc_panel(11)
    G = 8
    fit = did.clean_controls(panel(df), "y")
    res = fit.wild_bootstrap(restricted=restricted, weights="rademacher", draws=2**G)
    b0 = 0.0 if restricted else fit.result.estimate
    yhat, u = restricted_fitted(df, b0)
    g = cluster_index(df, "id")
    t_star = np.array([cc_t(df.with_columns(pl.Series("y", yhat + w[g] * u)), b0) for w in signs(G)])
    assert res.exact
    assert res.p_value == pytest.approx(np.mean(np.abs(t_star) >= abs(cc_t(df)) * (1 - RTOL)), abs=1e-12)


def test_clean_controls_randomization_equals_enumerated_estimates_by_hand() -> None:
    df = cc_panel(12)
    fit = did.clean_controls(panel(df), "y")
    res = fit.randomization_test()
    ts = np.array([abs(cc_t(with_treatment(df, a, "id"))) for a in design_assignments(df, "id")])
    assert res.exact and res.draws == len(ts)
    assert res.p_value == pytest.approx(np.mean(ts >= abs(cc_t(df)) * (1 - RTOL)), abs=1e-12)
    shifted = df.with_columns(pl.col("y") - res.ci_high * 1.01 * pl.col("d"))
    t0 = abs(cc_t(shifted))
    tb = np.array([abs(cc_t(with_treatment(shifted, a, "id"))) for a in design_assignments(df, "id")])
    assert np.mean(tb >= t0 * (1 - RTOL)) <= fit.alpha


# ------------------------------------------------------- synthetic DiD
def test_synthetic_did_randomization_equals_diff_diff_refits() -> None:
    """Each assignment of the treated block refitted by diff_diff.SyntheticDiD with the fit's regularisation."""
    dd = pytest.importorskip("diff_diff")
    import warnings

    rng = np.random.default_rng(13)
    N, T = 7, 6
    Y = rng.normal(size=(N, T)) + np.arange(T) + rng.normal(size=(N, 1))
    Y[-2:, -2:] += 1.0
    df = pl.DataFrame({"id": np.repeat(np.arange(N), T), "t": np.tile(np.arange(T), N), "y": Y.ravel(),
                       "d": [int(i >= N - 2 and t >= T - 2) for i in range(N) for t in range(T)]})
    fit = did.synthetic_did(panel(df), "y", replications=20)
    res = fit.randomization_test()
    taus = []
    for treated in itertools.combinations(range(N), 2):
        sub = df.with_columns(pl.col("id").is_in(list(treated)).cast(pl.Int64).alias("tr"),
                              (pl.col("t") >= T - 2).cast(pl.Int64).alias("post")).to_pandas()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = dd.SyntheticDiD(variance_method="placebo", n_bootstrap=2, seed=0,
                                  zeta_omega=fit.result.zeta_omega, zeta_lambda=fit.result.zeta_lambda).fit(
                sub, outcome="y", treatment="tr", unit="id", time="t", post_periods=[T - 2, T - 1])
        taus.append(float(ref.att))
    taus = np.array(taus)
    observed = taus[list(itertools.combinations(range(N), 2)).index((N - 2, N - 1))]
    assert observed == pytest.approx(fit.result.estimate, abs=1e-6)
    assert res.exact and res.draws == len(taus)
    assert res.p_value == pytest.approx(np.mean(np.abs(taus) >= abs(observed) * (1 - 1e-6)), abs=1e-12)


# ------------------------------------------------------------- 2 x 2 DiD
def two_periods(seed: int) -> pl.DataFrame:
    df = staggered(seed, units=10, T=2, starts=(1, 1, 1), drop=2)
    return df


def test_did_2x2_equals_pyfixest_and_its_jackknife() -> None:
    pf = pytest.importorskip("pyfixest")
    df = two_periods(14)
    fit = did.did_2x2(panel(df), "y")
    ref = pf.feols("y ~ d | id + t", data=df.to_pandas(), vcov={"CRV1": "id"})
    assert fit.result.estimate == pytest.approx(float(ref.coef().iloc[0]), rel=1e-9)
    leave = []
    for h in df["id"].unique().sort():
        sub = df.filter(pl.col("id") != h).to_pandas()
        leave.append(float(pf.feols("y ~ d | id + t", data=sub).coef().iloc[0]))
    leave = np.array(leave)
    G = len(leave)
    se = np.sqrt((G - 1) / G * np.sum((leave - leave.mean()) ** 2))
    assert fit.cv3().statistic == pytest.approx(fit.result.estimate / se, rel=1e-7)


def test_did_2x2_wild_bootstrap_and_randomization_equal_enumerated_dense_refits() -> None:
    df = two_periods(15)
    G = df["id"].n_unique()
    fit = did.did_2x2(panel(df), "y")
    y, d = df["y"].to_numpy(), df["d"].to_numpy().astype(float)
    t_obs = dense(df, y, d)[1][0]
    yhat, u = restricted_fitted(df, 0.0)
    g = cluster_index(df, "id")
    t_star = np.array([dense(df, yhat + w[g] * u, d)[1][0] for w in signs(G)])
    wb = fit.wild_bootstrap(weights="rademacher", draws=2**G)
    assert wb.p_value == pytest.approx(np.mean(np.abs(t_star) >= abs(t_obs) * (1 - RTOL)), abs=1e-12)
    ri = fit.randomization_test()
    ts = [abs(dense(s, y, s["d"].to_numpy().astype(float))[1][0])
          for a in design_assignments(df, "id") for s in [with_treatment(df, a, "id")]]
    assert ri.p_value == pytest.approx(np.mean(np.array(ts) >= abs(t_obs) * (1 - RTOL)), abs=1e-12)


def test_sdid_blocks_randomization_equals_the_one_block_test_and_averages_the_blocks() -> None:
    """One block: the same assignments and p-value as the single-block test; two blocks: the observed statistic
    is the average of the blocks' own SDID estimates, weighted by treated cluster-periods."""
    from pipeline.did.inference.synthetic import blocks_randomization, sdid_randomization
    from pipeline.did.sdid import sdid_matrix

    rng = np.random.default_rng(16)
    G, T = 8, 7
    means = rng.normal(size=(G, T)) + np.arange(T) + rng.normal(size=(G, 1))
    treat = np.zeros((G, T))
    treat[:2, 5:] = 1
    one = blocks_randomization(means, treat)
    Y = np.vstack([means[2:], means[:2]])
    ref = sdid_randomization(Y, n_treated=2, n_post=2, ci=False)
    assert one.exact and one.n_assignments == ref.n_assignments
    assert one.p_value == ref.p_value and one.t_stat == pytest.approx(ref.t_stat, abs=1e-9)
    treat[2, 4:6] = 1  # a second block, treated in periods 4 and 5 only
    two = blocks_randomization(means, treat, max_assignments=0, draws=50)
    controls = means[3:]
    first = sdid_matrix(np.vstack([controls, means[:2]]), n_treated=2, n_post=2, replications=2).estimate
    second = sdid_matrix(np.vstack([controls[:, :6], means[2:3, :6]]), n_treated=1, n_post=2,
                         replications=2).estimate
    assert two.t_stat == pytest.approx((4 * first + 2 * second) / 6, abs=1e-9)
    assert not two.exact and two.n_assignments == 51
