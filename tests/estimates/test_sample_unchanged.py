"""Every results table of the committed sample keeps every value it had in every column it had, to 1e-10.

``sample_baseline/*.parquet`` holds the tables of :func:`pipeline.analysis.estimate_all`
on ``fixtures/sample`` (with its correction) under the configuration of
:func:`_config`, written before the clean-control and SDID rows gained their
wild-bootstrap and randomization inference. Rows and columns may be added and
those rows' inference columns filled, and rows the disclosure rules withhold now
(counted by the treated side, secondary suppression, dominance) may lose their
numbers; nothing else may change. Rewrite the
baseline only for an intended change of the numbers::

    .venv/bin/python tests/estimates/test_sample_unchanged.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "fixtures" / "sample"
BASELINE = Path(__file__).resolve().parent / "sample_baseline"
TOL = 1e-10


def _config():
    from schemas.config import EvaluationConfig

    return EvaluationConfig(
        inference={"bootstrap_draws": 999, "randomization_max_assignments": 10_000, "randomization_draws": 199,
                   "subgroup_max_assignments": 1_000, "pretrend_draws": 99, "sdid_replications": 20,
                   "placebo_replications": 20, "placebo_draws": 99},
        subgroups=("municipality", "kotitaloustyyppi"),
    )


def estimate_sample(directory: Path) -> dict[str, pl.DataFrame]:
    """The results tables of the committed sample, estimated in this process."""
    from pipeline import analysis, db
    from pipeline.load import load_delivery
    from pipeline.panels import build_panels
    from pipeline.pseudonym import DEMO_KEY

    config = _config()
    with db.connect(directory / "sample.duckdb") as con:
        db.ensure_result_tables(con)
        load_delivery(con, kela_dir=SAMPLE / "kela", avain_dir=SAMPLE / "avain", key=DEMO_KEY, config=config,
                      run_id="sample")
        load_delivery(con, kela_dir=SAMPLE / "kela_correction", avain_dir=None, key=DEMO_KEY, config=config,
                      run_id="sample")
        build_panels(con, config)
        return analysis.estimate_all(con, config, processes=1)


FILLED = {"p_value_wild_bootstrap", "ci_low_wild_bootstrap", "ci_high_wild_bootstrap", "p_value_randomization"}
"""did_estimates columns that clean_controls and sdid rows fill now where they were null (their new inference)."""
NEW_INFERENCE = {"clean_controls", "sdid"}
ONE_TREATED_WITHHELD = {"p_value", "ci_low", "ci_high", "std_error_cv3", "p_value_wild_bootstrap",
                        "ci_low_wild_bootstrap", "ci_high_wild_bootstrap"}
"""Columns withheld for one treated municipality (``pipeline.estimates.INVALID_WITH_ONE_TREATED``)."""
KEYS = ("outcome", "estimator", "subgroup", "method", "analysis", "variant", "event_time", "parameter")


def _old_rows(base: pl.DataFrame, now: pl.DataFrame) -> pl.DataFrame:
    """The rows of ``now`` that ``base`` has (by its key columns, in order); new rows (new inference) dropped."""
    if now.height == base.height:
        return now
    keys = [c for c in KEYS if c in base.columns and base.schema[c] == pl.String]
    have = base.select(keys).with_columns(pl.lit(True).alias("_old")).unique()
    return now.join(have, on=keys, how="left", maintain_order="left").filter(pl.col("_old")).drop("_old")


def _same(name: str, base: pl.DataFrame, now: pl.DataFrame) -> None:
    missing = [c for c in base.columns if c not in now.columns]
    assert not missing, f"{name}: columns gone: {missing}"
    now = _old_rows(base, now)
    assert now.height == base.height, f"{name}: {base.height} rows before, {now.height} of them now"
    fillable = (now["estimator"].is_in(list(NEW_INFERENCE)).to_numpy()
                if name == "did_estimates" else np.zeros(now.height, dtype=bool))
    # rows the disclosure rules now withhold (by the treated side, secondary suppression, dominance): their
    # numbers may become NULL; every published number must still equal its old value
    withheld = np.zeros(now.height, dtype=bool)
    if "suppressed" in now.columns:
        before = base["suppressed"].fill_null(False).to_numpy() if "suppressed" in base.columns else False
        withheld = now["suppressed"].fill_null(False).to_numpy() & ~before
    # rows of an analysis with one treated municipality: the methods invalid there publish no p-value or interval
    invalid = np.zeros(now.height, dtype=bool)
    if "validity_note" in now.columns:
        invalid = now["validity_note"].is_not_null().to_numpy()
    for c in base.columns:
        a, b = base[c], now[c]
        allowed = withheld | invalid if c in ONE_TREATED_WITHHELD else withheld
        if c == "suppressed":
            a, b = a.filter(pl.Series(~withheld)), b.filter(pl.Series(~withheld))
            assert a.to_list() == b.to_list(), f"{name}.suppressed: a row is published now that was withheld"
            continue
        was, is_ = a.is_null().to_numpy(), b.is_null().to_numpy()
        moved = (was != is_) & ~(allowed & is_)
        if c in FILLED and name == "did_estimates":
            moved &= ~(was & fillable)
        assert not moved.any(), f"{name}.{c}: nulls moved in rows {np.flatnonzero(moved).tolist()}"
        both = ~was & ~is_
        if a.dtype.is_float():
            x, y = a.to_numpy()[both].astype(float), b.cast(pl.Float64).to_numpy()[both]
            assert np.array_equal(np.isnan(x), np.isnan(y)), f"{name}.{c}: NaN moved"
            ok = ~np.isnan(x)
            diff = np.abs(x[ok] - y[ok])
            assert diff.size == 0 or float(diff.max()) <= TOL, f"{name}.{c}: changed by up to {diff.max():.3g}"
        else:
            assert a.filter(pl.Series(both)).cast(pl.String).to_list() == \
                b.filter(pl.Series(both)).cast(pl.String).to_list(), f"{name}.{c}: values changed"


def test_the_new_inference_is_there(tmp_path: Path) -> None:
    """clean_controls rows carry wild-bootstrap and randomization p-values, sdid rows randomization ones."""
    did = estimate_sample(tmp_path)["did_estimates"].filter(pl.col("subgroup") == "all")
    cc = did.filter(pl.col("estimator") == "clean_controls")
    assert cc.height and cc["p_value_wild_bootstrap"].is_not_null().all() and cc["p_value_randomization"].is_not_null().all()
    sdid = did.filter(pl.col("estimator") == "sdid")
    assert sdid.height and sdid["p_value_randomization"].is_not_null().all()


@pytest.mark.slow
def test_every_value_of_every_earlier_column_is_unchanged(tmp_path: Path) -> None:
    if not BASELINE.exists():
        pytest.skip("no baseline written")
    tables = estimate_sample(tmp_path)
    for path in sorted(BASELINE.glob("*.parquet")):
        _same(path.stem, pl.read_parquet(path), tables[path.stem])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    BASELINE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, frame in estimate_sample(Path(tmp)).items():
            if frame.height:
                frame.write_parquet(BASELINE / f"{name}.parquet")
                print(name, frame.shape)
