"""group_time through the public API: R did's figures, the estimator underneath, and its inference by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from pipeline import did
from pipeline.did.group_time import group_time_frame

TOL = 1e-6


@pytest.fixture(scope="module")
def mpdta(shared_data) -> pl.DataFrame:
    treated = (pl.col("first.treat") > 0) & (pl.col("year") >= pl.col("first.treat"))
    return pl.read_csv(shared_data("mpdta.csv")).with_columns(treated.cast(pl.Int8).alias("d"))


@pytest.fixture(scope="module")
def panel(mpdta) -> did.Panel:
    return did.Panel(mpdta, unit="countyreal", time="year", treatment="d")


def small_staggered(seed: int = 3, cohorts: dict[int, int] | None = None, clusters: int = 8) -> pl.DataFrame:
    """Clusters of 3 units over periods 1..5; clusters 0, 1 start in period 3 and 2, 3 in period 4 (effect 0.5)."""
    cohorts = {0: 3, 1: 3, 2: 4, 3: 4} if cohorts is None else cohorts
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(clusters):
        a = rng.normal()
        for u in range(3):
            b = rng.normal()
            for t in range(1, 6):
                d = int(c in cohorts and t >= cohorts[c])
                rows.append((c, 10 * c + u, t, d, a + b + 0.2 * t + 0.5 * d + rng.normal(scale=0.5)))
    return pl.DataFrame(rows, schema=["cl", "id", "t", "d", "y"], orient="row")


@pytest.fixture(scope="module")
def small() -> pl.DataFrame:
    return small_staggered()


@pytest.fixture(scope="module")
def small_fit(small) -> did.GroupTimeFit:
    return did.group_time(did.Panel(small, unit="id", time="t", cluster="cl", treatment="d"), "y")


# --------------------------------------------------------------------------- the estimator underneath and R did


@pytest.mark.parametrize(("scenario", "control"), [("mpdta_nev_dr", "never_treated"),
                                                   ("mpdta_nyt_dr", "not_yet_treated")])
def test_group_time_equals_group_time_frame_and_r_did(scenario, control, panel, mpdta, shared_data) -> None:
    fit = did.group_time(panel, "lemp", control=control)
    direct = group_time_frame(mpdta, outcome="lemp", unit="countyreal", time="year", cohort="first.treat",
                              control=control).tidy()
    tidy = fit.tidy()
    assert tidy.columns == list(did.TIDY_COLUMNS)
    assert tidy["term"].to_list() == [f"att({g},{t})" for g, t in direct.select("group", "time").iter_rows()]
    np.testing.assert_allclose(tidy["estimate"], direct["estimate"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(tidy["std_error"], direct["std_error"], rtol=0, atol=1e-12)
    ref = pl.read_csv(shared_data("csdid_r_did_ref_attgt.csv"), null_values="NA").filter(pl.col("scenario") == scenario)
    assert tidy["term"].to_list() == [f"att({g},{t})" for g, t in ref.select("group", "t").iter_rows()]
    np.testing.assert_allclose(tidy["estimate"], ref["att"], rtol=0, atol=TOL)
    np.testing.assert_allclose(tidy["std_error"], ref["se"], rtol=0, atol=TOL)
    aggte = pl.read_csv(shared_data("csdid_r_did_ref_aggte.csv"), null_values="NA").filter(pl.col("scenario") == scenario)
    prefix = {"dynamic": "e", "group": "g", "calendar": "t"}
    for kind in ("simple", "dynamic", "group", "calendar"):
        r = aggte.filter(pl.col("type") == kind)
        agg = fit.aggregate(kind).tidy()
        assert agg["term"][0] == "att"
        assert agg["estimate"][0] == pytest.approx(r["overall_att"][0], abs=TOL)
        assert agg["std_error"][0] == pytest.approx(r["overall_se"][0], abs=TOL)
        if kind != "simple":
            assert agg["term"][1:].to_list() == [f"{prefix[kind]}={int(k)}" for k in r["egt"]]
            np.testing.assert_allclose(agg["estimate"][1:], r["att_egt"], rtol=0, atol=TOL)
            np.testing.assert_allclose(agg["std_error"][1:], r["se_egt"], rtol=0, atol=TOL)


def test_terms_are_labelled_with_the_panels_own_periods(panel) -> None:
    fit = did.group_time(panel, "lemp")
    assert "att(2004,2005)" in fit.tidy()["term"].to_list()
    assert "e=-2" in fit.aggregate("dynamic").tidy()["term"].to_list()
    assert fit.aggregate("group").tidy()["term"].to_list() == ["att", "g=2004", "g=2006", "g=2007"]
    assert "t=2006" in fit.aggregate("calendar").tidy()["term"].to_list()
    assert fit.aggregate("simple").tidy()["term"].to_list() == ["att"]


def test_the_panels_cluster_gives_r_dids_cluster_form(mpdta) -> None:
    data = mpdta.with_columns((pl.col("countyreal") // 1000).alias("state"))
    fit = did.group_time(did.Panel(data, unit="countyreal", time="year", cluster="state", treatment="d"), "lemp")
    direct = group_time_frame(data, outcome="lemp", unit="countyreal", time="year", cohort="first.treat",
                              cluster="state")
    np.testing.assert_allclose(fit.tidy()["std_error"], direct.tidy()["std_error"], rtol=1e-12)
    assert fit.aggregate("dynamic").tidy()["std_error"][0] == pytest.approx(direct.aggregate("dynamic").std_error,
                                                                              rel=1e-12)
    assert fit.tidy()["n_clusters"][0] == 29


# --------------------------------------------------------------------------- wild bootstrap


def test_unrestricted_bootstrap_standard_errors_agree_with_the_analytic_ones_on_mpdta(panel) -> None:
    """The draws are sum_c v_c S_c / n with E v = 0, E v^2 = 1: their sd estimates sqrt(sum S_c^2)/n.
    With B = 9999 draws of a near-normal sum its relative Monte-Carlo sd is 1/sqrt(2B) = 0.7%; allow 4 of those."""
    res = did.group_time(panel, "lemp").aggregate("dynamic").wild_bootstrap(restricted=False, draws=9_999, seed=7)
    table = res.table
    ratio = (table["bootstrap_std_error"] / table["std_error"]).to_numpy()
    assert np.all(np.abs(ratio - 1) < 4 / np.sqrt(2 * 9_999)), ratio
    assert res.draws == 9_999 and not res.exact
    assert res.ci_low < table["estimate"][0] < res.ci_high


def test_rademacher_enumeration_reproduces_the_analytic_standard_error_and_the_plain_bootstrap_t(small, small_fit):
    """With all 2^8 sign vectors E[v_c v_d] = 1{c = d} holds exactly: the bootstrap sd is the analytic se."""
    res = small_fit.wild_bootstrap(restricted=False, weights="rademacher", draws=1_000, null=0.1)
    assert res.exact and res.draws == 256
    np.testing.assert_allclose(res.table["bootstrap_std_error"], res.table["std_error"], rtol=1e-12)
    # the same bootstrap-t written plainly from group_time_frame's simple aggregate
    agg = group_time_frame(small.with_columns(_cohort(small)), outcome="y", unit="id", time="t", cohort="g",
                           cluster="cl").aggregate("simple")
    S = _cluster_sums(agg.influence_function, small)
    se = np.sqrt(np.sum(S**2)) / 24  # 8 clusters x 3 units
    t_obs = (agg.estimate - 0.1) / se
    t_star = [abs(np.dot(v, S) / np.sqrt(np.sum((np.array(v) * S) ** 2))) for v in itertools.product([-1, 1], repeat=8)]
    assert res.p_value == pytest.approx(np.mean(np.array(t_star) >= abs(t_obs) * (1 - 1e-10)), abs=1e-12)
    q = np.quantile(t_star, 0.95)
    assert (res.ci_low, res.ci_high) == pytest.approx((agg.estimate - q * se, agg.estimate + q * se), abs=1e-12)


@pytest.mark.parametrize("null", [0.0, 0.3, 0.9])
def test_restricted_bootstrap_p_value_equals_the_procedure_written_plainly(small, small_fit, null) -> None:
    """Score bootstrap with the null imposed: psi~ = psi + (theta - null) h, h_i = n omega_g(i) / n_g(i) with
    omega_g the simple aggregate's weight on cohort g (cohort shares over the post cells), every sign vector."""
    res = small_fit.wild_bootstrap(restricted=True, weights="rademacher", draws=1_000, null=null)
    data = small.with_columns(_cohort(small))
    fit = group_time_frame(data, outcome="y", unit="id", time="t", cohort="g", cluster="cl")
    agg = fit.aggregate("simple")
    post = fit.tidy().filter(pl.col("time") >= pl.col("group"))
    cohort_of_unit = data.group_by("id").agg(pl.col("g").first()).sort("id")["g"].to_numpy()
    share = {g: np.mean(cohort_of_unit == g) for g in (3, 4)}
    weights = np.array([share[g] for g in post["group"]])
    omega = {g: weights[(post["group"] == g).to_numpy()].sum() / weights.sum() for g in (3, 4)}
    h = np.array([24 * omega[g] / np.sum(cohort_of_unit == g) if g in omega else 0.0 for g in cohort_of_unit])
    S = _cluster_sums(agg.influence_function + (agg.estimate - null) * h, small)
    T = S.sum() / np.sqrt(np.sum(S**2))
    stars = [np.dot(v, S) / np.sqrt(np.sum((np.array(v) * S) ** 2)) for v in itertools.product([-1, 1], repeat=8)]
    assert res.statistic == pytest.approx(T, rel=1e-10)
    assert res.p_value == pytest.approx(np.mean(np.abs(stars) >= abs(T) * (1 - 1e-10)), abs=1e-12)
    assert res.exact and res.method == "wild_bootstrap_restricted_rademacher"


def test_restricted_interval_inverts_its_own_test(small_fit) -> None:
    res = small_fit.wild_bootstrap(restricted=True, weights="webb", draws=999, seed=2)
    for end, inside in ((res.ci_low, +1), (res.ci_high, -1)):
        assert np.isfinite(end)
        step = 1e-4 * (res.ci_high - res.ci_low)
        assert small_fit.wild_bootstrap(restricted=True, draws=999, seed=2, null=end + inside * step).p_value > 0.05
        assert small_fit.wild_bootstrap(restricted=True, draws=999, seed=2, null=end - inside * step).p_value <= 0.05


# --------------------------------------------------------------------------- randomization


def test_randomization_p_value_equals_brute_force_enumeration(small, small_fit) -> None:
    """8 clusters, two of cohort 3 and two of cohort 4: C(8,2) C(6,2) = 420 assignments, each refitted by
    group_time_frame on Y - null D with its own cohorts; |t| of the simple aggregate as statistic."""
    null = 0.2
    res = small_fit.randomization_test(null=null)
    assert res.exact and res.draws == 420
    y0 = small.with_columns((pl.col("y") - null * pl.col("d")).alias("y0"))

    def abs_t(cohort_of_cluster: dict[int, int]) -> float:
        data = y0.with_columns(pl.col("cl").replace_strict(cohort_of_cluster, default=0).alias("g"))
        agg = group_time_frame(data, outcome="y0", unit="id", time="t", cohort="g", cluster="cl").aggregate("simple")
        return abs(agg.estimate / agg.std_error)

    observed = abs_t({0: 3, 1: 3, 2: 4, 3: 4})
    stats = []
    for first in itertools.combinations(range(8), 2):
        rest = [c for c in range(8) if c not in first]
        for second in itertools.combinations(rest, 2):
            stats.append(abs_t({**{c: 3 for c in first}, **{c: 4 for c in second}}))
    assert len(stats) == 420
    assert res.statistic == pytest.approx(observed, rel=1e-9)
    assert res.p_value == pytest.approx(np.mean(np.array(stats) >= observed * (1 - 1e-10)), abs=1e-12)


def test_randomization_interval_contains_the_estimate_and_explicit_assignments_agree(small_fit) -> None:
    res = small_fit.randomization_test()
    est = small_fit.aggregate("simple").tidy()["estimate"][0]
    assert res.ci_low < est < res.ci_high
    # the observed treatment and one other, as explicit (R, G, T) cluster x period paths
    observed = np.zeros((8, 5))
    for c, g in {0: 3, 1: 3, 2: 4, 3: 4}.items():
        observed[c, g - 1:] = 1
    other = observed[[4, 5, 6, 7, 0, 1, 2, 3]]
    explicit = small_fit.randomization_test(np.stack([observed, other]))
    assert explicit.statistic == pytest.approx(res.statistic, rel=1e-12)
    assert explicit.draws == 2 and explicit.p_value in (0.5, 1.0)


def test_randomization_samples_when_enumeration_is_too_large(small_fit) -> None:
    res = small_fit.randomization_test(max_assignments=100, draws=49, seed=1)
    again = small_fit.randomization_test(max_assignments=100, draws=49, seed=1)
    assert not res.exact and res.draws == 50
    assert res.p_value == again.p_value and res.p_value >= 1 / 50


# --------------------------------------------------------------------------- panels that are not kokeilu's


def test_cluster_equal_to_unit_staggered_panel_runs_and_an_unbalanced_one_is_refused(panel, mpdta) -> None:
    fit = did.group_time(panel, "lemp")
    assert fit.tidy()["n_clusters"][0] == fit.tidy()["n_units"][0] == 500
    unbalanced = did.Panel(mpdta.slice(1), unit="countyreal", time="year", treatment="d")
    with pytest.raises(ValueError, match=r"^group_time: panel is unbalanced[^\n]*$"):
        did.group_time(unbalanced, "lemp")


def test_options_and_designs_are_checked_at_the_boundary(panel, mpdta, small) -> None:
    with pytest.raises(ValueError, match=r"^group_time: method: expected one of"):
        did.group_time(panel, "lemp", method="twfe")
    with pytest.raises(ValueError, match=r"^group_time: control: expected one of"):
        did.group_time(panel, "lemp", control="nevertreated")
    with pytest.raises(ValueError, match="type"):
        did.group_time(panel, "lemp").aggregate("event")
    with pytest.raises(ValueError, match=r"^Panel: expected never-treated units, found none[^\n]*$"):
        did.Panel(mpdta.filter(pl.col("first.treat") > 0), unit="countyreal", time="year", treatment="d")
    with pytest.raises(TypeError, match="expected a pipeline.did.Panel"):
        did.group_time(mpdta, "lemp")
    mixed = small.with_columns(pl.when(pl.col("id") == 0).then(0).otherwise(pl.col("d")).alias("d"))
    fit = did.group_time(did.Panel(mixed, unit="id", time="t", cluster="cl", treatment="d"), "y")
    with pytest.raises(ValueError, match=r"^randomization_test: expected one cohort per cluster[^\n]*$"):
        fit.randomization_test()
    with pytest.raises(did.InferenceNotAvailable):
        fit.cv3()


def test_a_panel_whose_periods_include_zero_or_dates_keeps_its_cohorts(small, small_fit) -> None:
    shifted = small.with_columns(pl.col("t") - 3)  # periods -2..2: a cohort at period 0 is not "never treated"
    fit = did.group_time(did.Panel(shifted, unit="id", time="t", cluster="cl", treatment="d"), "y")
    np.testing.assert_allclose(fit.tidy()["estimate"], small_fit.tidy()["estimate"], rtol=0, atol=1e-12)
    assert fit.tidy()["term"][0] == "att(0,-1)"


def _cohort(data: pl.DataFrame) -> pl.Expr:
    return pl.col("t").filter(pl.col("d") == 1).min().over("id").fill_null(0).alias("g")


def _cluster_sums(psi: np.ndarray, data: pl.DataFrame) -> np.ndarray:
    cluster_of_unit = data.group_by("id").agg(pl.col("cl").first()).sort("id")["cl"].to_numpy()
    return np.bincount(cluster_of_unit, weights=psi, minlength=8)


def test_a_treatment_that_ends_counts_by_its_first_treated_period(small, small_fit) -> None:
    """As Tornio's one-year pilot: cluster 0 leaves treatment after period 3. Its cohort, the estimates and the
    test of no effect are those of the absorbing path; under a non-zero null Y(0) = Y - null D uses the path."""
    ends = small.with_columns(pl.when((pl.col("cl") == 0) & (pl.col("t") > 3)).then(0).otherwise(pl.col("d"))
                              .alias("d"))
    fit = did.group_time(did.Panel(ends, unit="id", time="t", cluster="cl", treatment="d"), "y")
    assert fit.tidy().equals(small_fit.tidy())
    assert fit.randomization_test().p_value == small_fit.randomization_test().p_value
    assert fit.randomization_test(null=0.5).statistic != small_fit.randomization_test(null=0.5).statistic
