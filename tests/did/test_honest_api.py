"""honest on fitted event studies: the fit's own estimates and covariances, handed to HonestDiD."""

from __future__ import annotations


import numpy as np
import polars as pl
import pytest

from pipeline import did
from pipeline.did.group_time import group_time_frame
from pipeline.did.honest_api import event_study_estimates
from pipeline.did.sensitivity import honest_from_estimates



@pytest.fixture(scope="module")
def mpdta(shared_data) -> pl.DataFrame:
    treated = (pl.col("first.treat") > 0) & (pl.col("year") >= pl.col("first.treat"))
    return pl.read_csv(shared_data("mpdta.csv")).with_columns(treated.cast(pl.Int8).alias("d"))


@pytest.fixture(scope="module")
def clustered() -> pl.DataFrame:
    """10 clusters of 3 units, periods 1..6; clusters 0-1 start in period 3, 2-3 in period 4 (effect 0.4)."""
    rng = np.random.default_rng(11)
    cohorts = {0: 3, 1: 3, 2: 4, 3: 4}
    rows = []
    for c in range(10):
        a = rng.normal()
        for u in range(3):
            b = rng.normal()
            for t in range(1, 7):
                d = int(c in cohorts and t >= cohorts[c])
                rows.append((c, 10 * c + u, t, d, a + b + 0.1 * t + 0.4 * d + rng.normal(scale=0.3)))
    return pl.DataFrame(rows, schema=["cl", "id", "t", "d", "y"], orient="row")


@pytest.fixture(scope="module")
def es(clustered) -> did.EventStudyFit:
    return did.event_study(did.Panel(clustered, unit="id", time="t", cluster="cl", treatment="d"), "y")


def split(fit: did.EventStudyFit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the leads (before -1) then the lags, as HonestDiD orders them."""
    e = fit.result.event_times
    return np.r_[np.flatnonzero(e < -1), np.flatnonzero(e >= 0)], np.flatnonzero(e < -1), np.flatnonzero(e >= 0)


@pytest.mark.parametrize(("method", "values"), [("smoothness", [0.0, 0.05]), ("relative_magnitudes", [0.5, 1.0])])
def test_cv1_equals_honest_from_estimates_on_the_fits_own_estimates(es, method, values) -> None:
    idx, pre, post = split(es)
    r = es.result
    ours = did.honest(es, method=method, values=values, covariance="cv1")
    direct = honest_from_estimates(r.estimate[idx], r.vcov[np.ix_(idx, idx)], num_pre=pre.size, num_post=post.size,
                                   method=method, values=values)
    assert ours.columns == ["value", "ci_low", "ci_high"]
    assert ours.equals(direct)


def test_cv3_is_the_jackknife_of_refits_without_each_cluster(es, clustered) -> None:
    """The default covariance, written plainly: refit the event study without each cluster, CV3J of the vectors."""
    idx, pre, post = split(es)
    leave = []
    for c in range(10):
        sub = clustered.filter(pl.col("cl") != c)
        leave.append(did.event_study(did.Panel(sub, unit="id", time="t", cluster="cl", treatment="d"), "y",
                                     cv3=False).result.estimate)
    leave = np.array(leave)
    dev = leave - leave.mean(axis=0)
    V3 = 9 / 10 * dev.T @ dev
    np.testing.assert_allclose(np.sqrt(np.diag(V3)), es.result.std_error_cv3, rtol=1e-9)
    beta, sigma, n_pre, n_post = event_study_estimates(es)
    np.testing.assert_allclose(sigma, V3[np.ix_(idx, idx)], rtol=1e-9, atol=1e-14)
    ours = did.honest(es, method="smoothness", values=[0.0, 0.05])
    direct = honest_from_estimates(es.result.estimate[idx], V3[np.ix_(idx, idx)], num_pre=n_pre, num_post=n_post,
                                   method="smoothness", values=[0.0, 0.05])
    np.testing.assert_allclose(ours["ci_low"], direct["ci_low"], rtol=1e-7)
    np.testing.assert_allclose(ours["ci_high"], direct["ci_high"], rtol=1e-7)


def test_bootstrap_covariance_with_every_sign_vector_is_the_cv1_covariance(es) -> None:
    """E[w_g w_h] = 1{g = h} holds exactly over all 2^10 sign vectors: the draws' covariance is CV1."""
    _, cv1, _, _ = event_study_estimates(es, covariance="cv1")
    _, boot, _, _ = event_study_estimates(es, covariance="bootstrap", weights="rademacher", draws=1_024)
    np.testing.assert_allclose(boot, cv1, rtol=1e-9, atol=1e-15)


def test_window_keeps_the_chosen_event_times(es) -> None:
    beta, _, n_pre, n_post = event_study_estimates(es, covariance="cv1", window=(-2, 1))
    e = es.result.event_times
    assert (n_pre, n_post) == (1, 2)
    np.testing.assert_allclose(beta, es.result.estimate[np.isin(e, [-2, 0, 1])])


def test_group_time_dynamic_aggregate_with_its_influence_function_covariance(mpdta) -> None:
    """R HonestDiD's honest_did for aggte: the event-time estimates but e = -1, V = IF'IF / n^2; its diagonal is
    R did's squared analytic standard errors."""
    panel = did.Panel(mpdta, unit="countyreal", time="year", treatment="d")
    fit = did.group_time(panel, "lemp", base_period="universal")
    agg = group_time_frame(mpdta, outcome="lemp", unit="countyreal", time="year", cohort="first.treat",
                           base_period="universal").aggregate("dynamic")
    keep = (agg.table["event_time"] != -1).to_numpy()
    inf = agg.table_influence[:, keep]
    V = inf.T @ inf / 500**2
    np.testing.assert_allclose(np.sqrt(np.diag(V)), agg.table["std_error"].to_numpy()[keep], rtol=1e-12)
    beta = agg.table["estimate"].to_numpy()[keep]
    direct = honest_from_estimates(beta, V, num_pre=3, num_post=4, method="relative_magnitudes", values=[0.5, 1.0])
    assert did.honest(fit, method="relative_magnitudes", values=[0.5, 1.0]).equals(direct)
    assert did.honest(fit.aggregate("dynamic"), method="relative_magnitudes",
                                  values=[0.5, 1.0]).equals(direct)


def test_refusals_are_one_line(mpdta, es) -> None:
    panel = did.Panel(mpdta, unit="countyreal", time="year", treatment="d")
    with pytest.raises(ValueError, match=r"^honest: a group-time fit needs base_period='universal'"):
        did.honest(did.group_time(panel, "lemp"), values=[1.0])
    with pytest.raises(ValueError, match=r"^honest: covariance: expected one of"):
        did.honest(es, covariance="hc1")
    with pytest.raises(ValueError, match=r"^honest: expected leads and lags"):
        did.honest(es, window=(0, 3))
    state = mpdta.with_columns((pl.col("countyreal") // 1000).alias("state"))
    by_state = did.event_study(did.Panel(state, unit="countyreal", time="year", cluster="state", treatment="d"),
                               "lemp")
    with pytest.raises(ValueError, match=r"^honest: the CV3 covariance is not defined[^\n]*$"):
        did.honest(by_state, method="smoothness", values=[0.0])
    with pytest.raises(TypeError, match="expected an EventStudyFit"):
        did.honest(did.twfe(panel, "lemp"))
