"""The public API: ``Panel`` checks its input once, every estimator returns a Fit with the same tidy columns."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from pipeline import did

SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "data"


def panel_frame(seed: int = 0, *, units: int = 12, T: int = 6) -> pl.DataFrame:
    """Units clustered by themselves, two adoption cohorts (periods 3 and 4) and never-treated units."""
    rng = np.random.default_rng(seed)
    start = np.array([3] * 3 + [4] * 2 + [99] * (units - 5))
    i, t = np.repeat(np.arange(units), T), np.tile(np.arange(T), units)
    d = (t >= start[i]).astype(int)
    return pl.DataFrame({"id": i, "t": t, "d": d, "y": rng.normal(size=units)[i] + 0.1 * t + 0.5 * d
                         + rng.normal(size=units * T)})


def block_frame(seed: int = 0) -> pl.DataFrame:
    """Two treated units from period 4 of 6 (block design) among eight."""
    df = panel_frame(seed, units=8)
    return df.with_columns(((pl.col("id") < 2) & (pl.col("t") >= 4)).cast(pl.Int64).alias("d"))


def test_panel_accepts_polars_pandas_and_duckdb() -> None:
    df = panel_frame()
    rel = duckdb.from_arrow(df.to_arrow())
    fits = [did.twfe(did.Panel(x, unit="id", time="t", treatment="d"), "y") for x in (df, df.to_pandas(), rel)]
    assert fits[0].tidy().equals(fits[1].tidy()) and fits[0].tidy().equals(fits[2].tidy())
    p = did.Panel(df, unit="id", time="t", treatment="d")
    assert p.cluster == "id" and p.n_units == 12 and p.n_periods == 6


@pytest.mark.parametrize(("change", "message"), [
    (lambda df: df.drop("d"), "missing"),
    (lambda df: df.with_columns(pl.when(pl.col("id") == 1).then(None).otherwise(pl.col("t")).alias("t")), "nulls"),
    (lambda df: pl.concat([df, df.head(1)]), "one row per"),
    (lambda df: df.with_columns((pl.col("d") * 2).alias("d")), "must be 0/1"),
    (lambda df: df.with_columns(pl.lit(1).alias("d")), "never-treated"),
])
def test_panel_checks_give_one_line_errors(change, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        did.Panel(change(panel_frame()), unit="id", time="t", treatment="d")
    assert "\n" not in str(info.value)


def test_every_fit_has_the_same_tidy_columns() -> None:
    p = did.Panel(panel_frame(), unit="id", time="t", treatment="d")
    two = did.Panel(panel_frame().filter(pl.col("t").is_in([2, 3])), unit="id", time="t", treatment="d")
    fits = [did.twfe(p, "y"), did.event_study(p, "y"), did.clean_controls(p, "y"),
            did.synthetic_did(did.Panel(block_frame(), unit="id", time="t", treatment="d"), "y", replications=20),
            did.did_2x2(two, "y")]
    for fit in fits:
        assert isinstance(fit, did.Fit)
        assert tuple(fit.tidy().columns) == did.TIDY_COLUMNS
        assert fit.estimator in fit.summary()
    assert fits[1].tidy().height == len(fits[1].result.event_times)
    assert fits[1].event_table()["event_time"].to_list() == fits[1].result.event_times.tolist()


def test_the_fit_records_the_path_and_why() -> None:
    df = panel_frame()
    assert did.twfe(did.Panel(df, unit="id", time="t", treatment="d"), "y").path == "aggregated"
    fit = did.twfe(did.Panel(df.slice(1), unit="id", time="t", treatment="d"), "y")
    assert fit.path == "general" and "unbalanced" in fit.fallback_reason and "unbalanced" in fit.summary()
    assert did.twfe(did.Panel(df, unit="id", time="t", treatment="d"), "y", path="general").fallback_reason is None


def test_inference_results_share_one_type_and_refusals_name_the_alternatives() -> None:
    p = did.Panel(panel_frame(), unit="id", time="t", treatment="d")
    fit = did.twfe(p, "y")
    for res in (fit.cv3(), fit.wild_bootstrap(draws=99), fit.randomization_test(draws=99)):
        assert isinstance(res, did.InferenceResult)
        assert res.tidy().columns == ["method", "statistic", "p_value", "ci_low", "ci_high", "draws", "exact"]
    sd = did.synthetic_did(did.Panel(block_frame(), unit="id", time="t", treatment="d"), "y", replications=20)
    with pytest.raises(did.InferenceNotAvailable, match="randomization_test"):
        sd.wild_bootstrap()
    with pytest.raises(ValueError, match="weights"):
        fit.wild_bootstrap(weights="mammen")


def test_estimators_take_only_a_panel() -> None:
    with pytest.raises(TypeError, match="Panel"):
        did.twfe(panel_frame(), "y")
    with pytest.raises(ValueError, match="treatment"):
        did.twfe(did.Panel(panel_frame(), unit="id", time="t"), "y")


def test_mpdta_twfe_equals_fixest() -> None:
    """R did's mpdta: fixest's feols(lemp ~ d | countyreal + year, cluster = ~countyreal) gives -0.036549 (0.013265)."""
    path = SHARED_DATA / "mpdta.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    m = pl.read_csv(path).with_columns(
        ((pl.col("treat") == 1) & (pl.col("year") >= pl.col("first.treat"))).cast(pl.Int64).alias("d"))
    t = did.twfe(did.Panel(m, unit="countyreal", time="year", cluster="countyreal", treatment="d"), "lemp").tidy()
    assert (round(t["estimate"][0], 6), round(t["std_error"][0], 6)) == (-0.036549, 0.013265)
    assert t["n_clusters"][0] == 500 and t["path"][0] == "aggregated"


def test_explicit_assignments_give_the_design_test_when_they_are_the_design() -> None:
    """Every reassignment of the design passed explicitly: the same p-value as the design's own enumeration."""
    import itertools

    df = panel_frame(3, units=8)
    p = did.Panel(df, unit="id", time="t", treatment="d")
    treat = df.sort("id", "t")["d"].to_numpy().reshape(8, 6).astype(float)
    paths = [treat[g] for g in range(8) if treat[g].any()]
    explicit = set()
    for chosen in itertools.permutations(range(8), len(paths)):
        a = np.zeros((8, 6))
        for g, path in zip(chosen, paths):
            a[g] = path
        explicit.add(a.tobytes())
    explicit = np.array([np.frombuffer(b).reshape(8, 6) for b in sorted(explicit)])
    for fit in (did.twfe(p, "y"), did.clean_controls(p, "y")):
        design, given = fit.randomization_test(), fit.randomization_test(explicit)
        assert given.exact and given.draws == design.draws == len(explicit)
        assert given.p_value == pytest.approx(design.p_value, abs=1e-12)
    with pytest.raises(ValueError, match="shape"):
        did.twfe(p, "y").randomization_test(explicit[:, :3])
