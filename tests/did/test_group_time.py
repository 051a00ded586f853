"""Callaway-Sant'Anna group-time ATTs: R did 2.5.1's published figures, hand 2x2s, and a peer."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import polars as pl
import pytest

from pipeline.did.group_time import GroupTimeResult, group_time_frame

TOL = 1e-6

SCENARIOS = {
    "mpdta_nev_dr": {"control": "never_treated", "method": "dr"},
    "mpdta_nyt_dr": {"control": "not_yet_treated", "method": "dr"},
    "mpdta_nev_reg_cov": {"control": "never_treated", "method": "reg", "covariates": ["lpop"]},
    "mpdta_nev_ipw": {"control": "never_treated", "method": "ipw"},  # R ran it with xformla = ~1
}
AGGREGATIONS = ("simple", "group", "dynamic", "calendar")


@pytest.fixture(scope="module")
def mpdta(shared_data) -> pl.DataFrame:
    return pl.read_csv(shared_data("mpdta.csv"))


@pytest.fixture(scope="module")
def r_attgt(shared_data) -> pl.DataFrame:
    return pl.read_csv(shared_data("csdid_r_did_ref_attgt.csv"), null_values="NA")


@pytest.fixture(scope="module")
def r_aggte(shared_data) -> pl.DataFrame:
    return pl.read_csv(shared_data("csdid_r_did_ref_aggte.csv"), null_values="NA")


def fit_mpdta(mpdta: pl.DataFrame, **options) -> GroupTimeResult:
    return group_time_frame(mpdta, outcome="lemp", unit="countyreal", time="year", cohort="first.treat", **options)


@pytest.fixture(scope="module")
def fits(mpdta: pl.DataFrame) -> dict[str, GroupTimeResult]:
    return {name: fit_mpdta(mpdta, **options) for name, options in SCENARIOS.items()}


# --------------------------------------------------------------------------- R did 2.5.1


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_group_time_effects_equal_r_did(scenario: str, fits, r_attgt) -> None:
    ref = r_attgt.filter(pl.col("scenario") == scenario).sort("group", "t")
    got = fits[scenario].tidy().sort("group", "time")
    assert got["group"].to_list() == ref["group"].to_list()
    assert got["time"].to_list() == ref["t"].to_list()
    np.testing.assert_allclose(got["estimate"].to_numpy(), ref["att"].to_numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(got["std_error"].to_numpy(), ref["se"].to_numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("type_", AGGREGATIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_aggregations_equal_r_did(scenario: str, type_: str, fits, r_aggte) -> None:
    ref = r_aggte.filter((pl.col("scenario") == scenario) & (pl.col("type") == type_))
    agg = fits[scenario].aggregate(type_)
    assert agg.estimate == pytest.approx(ref["overall_att"][0], rel=0, abs=TOL)
    assert agg.std_error == pytest.approx(ref["overall_se"][0], rel=0, abs=TOL)
    if type_ == "simple":
        assert agg.tidy().is_empty()
        return
    table = agg.tidy()
    assert table[:, 0].to_list() == ref["egt"].cast(pl.Int64).to_list()
    np.testing.assert_allclose(table["estimate"].to_numpy(), ref["att_egt"].to_numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(table["std_error"].to_numpy(), ref["se_egt"].to_numpy(), rtol=0, atol=TOL)


def test_event_time_window_keeps_the_rows_of_the_full_event_study(fits) -> None:
    fit = fits["mpdta_nev_dr"]
    full = fit.aggregate("dynamic").tidy()
    window = fit.aggregate("dynamic", min_e=-1, max_e=2)
    assert window.tidy().equals(full.filter(pl.col("event_time").is_between(-1, 2)))
    assert window.estimate == pytest.approx(full.filter(pl.col("event_time").is_between(0, 2))["estimate"].mean())


# --------------------------------------------------------------------------- independent of R


def hand_two_by_two(panel: pl.DataFrame, g: int, t: int, base: int, control: pl.Expr) -> float:
    """Mean change of cohort g minus mean change of the comparison units, from base to t."""
    change = (
        panel.filter(pl.col("year").is_in([base, t]))
        .group_by("countyreal", "first.treat")
        .agg((pl.col("lemp").filter(pl.col("year") == t).first()
              - pl.col("lemp").filter(pl.col("year") == base).first()).alias("dy"))
    )
    treated = change.filter(pl.col("first.treat") == g)["dy"].mean()
    compared = change.filter(control)["dy"].mean()
    return treated - compared


@pytest.mark.parametrize("anticipation", [0, 1])
@pytest.mark.parametrize("control", ["never_treated", "not_yet_treated"])
def test_without_covariates_each_cell_is_the_two_by_two_difference_of_means(mpdta, control, anticipation) -> None:
    with pytest.warns(UserWarning, match="already treated") if anticipation else contextlib.nullcontext():
        fit = fit_mpdta(mpdta, control=control, anticipation=anticipation)  # 2004 <= 2003 + 1: dropped, as R
    assert fit.tidy()["group"].unique().to_list() == ([2004, 2006, 2007] if anticipation == 0 else [2006, 2007])
    for row in fit.tidy().iter_rows(named=True):
        g, t = row["group"], row["time"]
        base = t - 1 if t < g else g - 1 - anticipation  # varying base period
        comparison = pl.col("first.treat") == 0
        if control == "not_yet_treated":
            later = max(t, base) + anticipation
            comparison = comparison | ((pl.col("first.treat") > later) & (pl.col("first.treat") != g))
        assert row["estimate"] == pytest.approx(hand_two_by_two(mpdta, g, t, base, comparison), abs=1e-12)


def test_without_covariates_dr_reg_and_ipw_coincide(mpdta) -> None:
    fits_ = [fit_mpdta(mpdta, method=m) for m in ("dr", "reg", "ipw")]
    for other in fits_[1:]:
        np.testing.assert_allclose(other.tidy()["estimate"], fits_[0].tidy()["estimate"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(other.influence_function, fits_[0].influence_function, rtol=0, atol=1e-12)


def test_standard_errors_are_the_root_sum_of_squared_influence_over_n(fits) -> None:
    fit = fits["mpdta_nev_reg_cov"]
    inf = fit.influence_function
    assert inf.shape == (fit.n_units, fit.tidy().height) == (500, 12)
    np.testing.assert_allclose(np.sqrt((inf**2).sum(axis=0)) / fit.n_units, fit.tidy()["std_error"], rtol=1e-12)
    np.testing.assert_allclose(inf.mean(axis=0), 0, atol=1e-12)  # an influence function is centred


@pytest.mark.parametrize("method", ["dr", "reg", "ipw"])
def test_estimates_do_not_depend_on_the_scale_of_a_covariate(mpdta, method) -> None:
    """With an intercept, lpop and 1e4 * lpop + 3e5 span the same design."""
    ours = fit_mpdta(mpdta, method=method, covariates=["lpop"])
    rescaled = fit_mpdta(mpdta.with_columns(pl.col("lpop") * 1e4 + 3e5), method=method, covariates=["lpop"])
    np.testing.assert_allclose(rescaled.tidy()["estimate"], ours.tidy()["estimate"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(rescaled.tidy()["std_error"], ours.tidy()["std_error"], rtol=1e-7)


def test_universal_base_period_puts_a_zero_cell_at_g_minus_one(mpdta) -> None:
    table = fit_mpdta(mpdta, base_period="universal").tidy()
    reference = table.filter(pl.col("time") == pl.col("group") - 1)
    assert reference["estimate"].to_list() == [0.0, 0.0, 0.0]
    assert reference["std_error"].null_count() == 3  # R reports a zero standard error as missing
    assert table.height == 3 * 5


def test_planted_effect_is_recovered_within_its_interval() -> None:
    """Y = unit effect + period effect + 0.5 * X * period + 1.0 * treated-after-g + noise; X drives cohort."""
    rng = np.random.default_rng(20210101)
    n, periods = 3000, np.arange(1, 6)
    x = rng.normal(size=n)
    cohort = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-x)), rng.choice([3, 4], size=n), 0)
    unit_effect = rng.normal(size=n) + x
    rows = []
    for t in periods:
        treated_now = (cohort > 0) & (t >= cohort)
        y = unit_effect + 0.3 * t + 0.5 * x * t + 1.0 * treated_now + rng.normal(scale=0.5, size=n)
        rows.append(pl.DataFrame({"id": np.arange(n), "t": t, "g": cohort, "x": x, "y": y}))
    panel = pl.concat(rows)
    for method in ("dr", "reg", "ipw"):
        fit = group_time_frame(panel, outcome="y", unit="id", time="t", cohort="g", covariates=["x"], method=method)
        agg = fit.aggregate("simple")
        assert agg.ci_low < 1.0 < agg.ci_high, method
        pre = fit.tidy().filter(pl.col("time") < pl.col("group"))
        assert (pre["ci_low"] < 0).all() and (pre["ci_high"] > 0).all(), method


def test_an_unbalanced_panel_is_refused(mpdta) -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        fit_mpdta(mpdta.slice(1))


def test_bad_options_are_refused(mpdta) -> None:
    with pytest.raises(ValueError, match="method"):
        fit_mpdta(mpdta, method="twfe")
    with pytest.raises(ValueError, match="control"):
        fit_mpdta(mpdta, control="nevertreated")
    with pytest.raises(ValueError, match="type"):
        fit_mpdta(mpdta).aggregate("event")


def test_without_never_treated_units_the_last_cohort_is_the_comparison(mpdta) -> None:
    """As R did: periods from the last cohort's first treated period on are dropped, and with
    never-treated comparisons that cohort takes their place (with not-yet-treated ones it is no group)."""
    treated = mpdta.filter(pl.col("first.treat") > 0)
    relabelled = treated.filter(pl.col("year") < 2007).with_columns(
        pl.when(pl.col("first.treat") == 2007).then(0).otherwise(pl.col("first.treat")).alias("first.treat")
    )
    with pytest.warns(UserWarning, match="no never-treated units"):
        fit = fit_mpdta(treated)
    expected = fit_mpdta(relabelled)
    assert fit.tidy().equals(expected.tidy())
    assert fit.aggregate("dynamic").tidy().equals(expected.aggregate("dynamic").tidy())
    with pytest.warns(UserWarning, match="no never-treated units"):
        not_yet = fit_mpdta(treated, control="not_yet_treated")
    assert not_yet.tidy()["group"].unique().to_list() == [2004, 2006]
    assert not_yet.tidy()["time"].max() == 2006


def test_a_cell_that_cannot_be_estimated_is_missing_and_aggregations_can_drop_it(mpdta) -> None:
    """A covariate that separates cohort 2004 from the comparisons: no overlap, so its cells are missing."""
    data = mpdta.with_columns((pl.col("first.treat") == 2004).cast(pl.Float64).alias("separates"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_mpdta(data.with_columns(pl.col("separates") + 0.001 * pl.col("lpop")), method="ipw",
                        covariates=["separates"])
    missing = fit.tidy().filter(pl.col("estimate").is_null())
    assert missing["group"].unique().to_list() == [2004]
    with pytest.raises(ValueError, match="na_rm"):
        fit.aggregate("simple")
    kept = fit.aggregate("group", na_rm=True).tidy()
    assert kept["group"].to_list() == [2006, 2007]


def test_units_treated_in_the_first_period_are_dropped(mpdta) -> None:
    early = mpdta.with_columns(
        pl.when(pl.col("countyreal") < 8100).then(2003).otherwise(pl.col("first.treat")).alias("first.treat")
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_mpdta(early)
    assert any("already treated" in str(w.message) for w in caught)
    assert fit.n_units == 500 - mpdta.filter(pl.col("countyreal") < 8100)["countyreal"].n_unique()


# --------------------------------------------------------------------------- peer: diff-diff's CallawaySantAnna


def diff_diff_fit(mpdta: pl.DataFrame, **options):
    dd = pytest.importorskip("diff_diff")
    covariates = options.pop("covariates")
    balance_e = options.pop("balance_e", None)
    cs = dd.CallawaySantAnna(n_bootstrap=0, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cs.fit(
            mpdta.rename({"first.treat": "first_treat"}).to_pandas(), outcome="lemp", unit="countyreal",
            time="year", first_treat="first_treat", covariates=covariates, aggregate="all", balance_e=balance_e,
        )


def with_median_split(mpdta: pl.DataFrame) -> pl.DataFrame:
    return mpdta.with_columns((pl.col("lpop") > pl.col("lpop").median()).cast(pl.Float64).alias("large"))


def _nan(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


@pytest.mark.parametrize("base_period", ["varying", "universal"])
@pytest.mark.parametrize("control", ["never_treated", "not_yet_treated"])
@pytest.mark.parametrize(("method", "covariate"), [("ipw", "lpop"), ("reg", "lpop"), ("dr", "large")])
def test_with_covariates_equals_diff_diff(mpdta, method, covariate, control, base_period) -> None:
    """Cells, simple, event-study and group aggregations equal diff-diff 3.13 to 1e-6 (in fact ~1e-15).

    For "dr" the covariate is saturated (a median split of lpop): diff-diff's
    doubly robust estimator divides the comparison term by the number of treated
    units where DRDID (and this module) divides by the sum of the propensity
    weights; the two coincide when the logit is saturated. See the next test.
    """
    data = with_median_split(mpdta)
    ours = fit_mpdta(data, method=method, covariates=[covariate], control=control, base_period=base_period)
    peer = diff_diff_fit(data, estimation_method=method, covariates=[covariate], control_group=control,
                         base_period=base_period)
    table = ours.tidy()
    cells = [peer.group_time_effects[(g, t)] for g, t in table.select("group", "time").iter_rows()]
    np.testing.assert_allclose(table["estimate"], [c["effect"] for c in cells], rtol=0, atol=TOL)
    np.testing.assert_allclose(_nan(table["std_error"]), [c["se"] for c in cells], rtol=0, atol=TOL)
    simple = ours.aggregate("simple")
    assert (simple.estimate, simple.std_error) == pytest.approx((peer.overall_att, peer.overall_se), abs=TOL)
    summaries = [("dynamic", "event_time", peer.event_study_effects), ("group", "group", peer.group_effects)]
    for type_, key, effects in summaries:
        agg = ours.aggregate(type_).tidy()
        expected = [effects[k] for k in agg[key]]
        np.testing.assert_allclose(agg["estimate"], [e["effect"] for e in expected], rtol=0, atol=TOL)
        np.testing.assert_allclose(_nan(agg["std_error"]), [e["se"] for e in expected], rtol=0, atol=TOL)


@pytest.mark.parametrize("balance_e", [0, 1, 2])
def test_balanced_event_study_equals_diff_diff(mpdta, balance_e) -> None:
    """R did also trims event times outside [balance_e - (T_last - T_first), balance_e]; diff-diff keeps
    the later ones, so the comparison is over the event times both report."""
    ours = fit_mpdta(mpdta).aggregate("dynamic", balance_e=balance_e).tidy()
    peer = diff_diff_fit(mpdta, estimation_method="dr", covariates=None, balance_e=balance_e).event_study_effects
    assert ours["event_time"].max() == balance_e
    np.testing.assert_allclose(ours["estimate"], [peer[e]["effect"] for e in ours["event_time"]], rtol=0, atol=TOL)
    np.testing.assert_allclose(ours["std_error"], [peer[e]["se"] for e in ours["event_time"]], rtol=0, atol=TOL)


def test_dr_with_a_continuous_covariate_differs_from_diff_diff_by_the_weight_normalisation(mpdta) -> None:
    """diff-diff's DR comparison term is sum_C w (dY - m) / n_treated (its ``_doubly_robust`` docstring);
    DRDID's ``drdid_panel``, which R did calls and this module follows, divides by sum_C w. With lpop the
    logit is not saturated, sum_C w / n_treated = 1 + O(1e-3), and the cells differ by up to 1e-5."""
    ours = fit_mpdta(mpdta, method="dr", covariates=["lpop"])
    peer = diff_diff_fit(mpdta, estimation_method="dr", covariates=["lpop"])
    theirs = [peer.group_time_effects[k]["effect"] for k in ours.tidy().select("group", "time").iter_rows()]
    gap = np.abs(ours.tidy()["estimate"].to_numpy() - theirs)
    assert 1e-7 < gap.max() < 2e-5


# --------------------------------------------------------------------------- clustered standard errors


def with_state(mpdta: pl.DataFrame) -> pl.DataFrame:
    return mpdta.with_columns((pl.col("countyreal") // 1000).alias("state"), pl.col("countyreal").alias("county"))


def test_one_unit_per_cluster_gives_the_unit_level_standard_errors(mpdta) -> None:
    data = with_state(mpdta)
    plain, clustered = fit_mpdta(data), fit_mpdta(data, cluster="county")
    np.testing.assert_allclose(clustered.tidy()["std_error"], plain.tidy()["std_error"], rtol=1e-12)
    for type_ in AGGREGATIONS:
        assert clustered.aggregate(type_).std_error == pytest.approx(plain.aggregate(type_).std_error, rel=1e-12)


@pytest.mark.parametrize(("method", "covariates"), [("dr", []), ("ipw", ["lpop"]), ("reg", ["lpop"])])
def test_cluster_robust_standard_errors_equal_diff_diff_but_for_its_small_sample_factor(mpdta, method, covariates):
    """R did's analytic cluster form is sqrt(sum_c S_c^2) / n with S_c the cluster sums of the influence
    function (no small-sample factor); diff-diff multiplies the variance by G / (G - 1)."""
    data = with_state(mpdta)
    ours = fit_mpdta(data, method=method, covariates=covariates, cluster="state")
    peer = diff_diff_fit(data, estimation_method=method, covariates=covariates, cluster="state")
    factor = np.sqrt(29 / 28)  # 29 states
    table = ours.tidy()
    theirs = [peer.group_time_effects[k]["se"] for k in table.select("group", "time").iter_rows()]
    np.testing.assert_allclose(table["std_error"].to_numpy() * factor, theirs, rtol=0, atol=TOL)
    assert ours.aggregate("simple").std_error * factor == pytest.approx(peer.overall_se, abs=TOL)
    agg = ours.aggregate("dynamic").tidy()
    theirs = [peer.event_study_effects[e]["se"] for e in agg["event_time"]]
    np.testing.assert_allclose(agg["std_error"].to_numpy() * factor, theirs, rtol=0, atol=TOL)


def test_a_cluster_must_be_constant_within_unit(mpdta) -> None:
    with pytest.raises(ValueError, match="time-invariant"):
        fit_mpdta(mpdta.with_columns(pl.col("year").alias("wave")), cluster="wave")
