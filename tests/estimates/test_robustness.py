"""Leave-one-out, the anticipation check and the cost view on generated deliveries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import db
from pipeline.estimates import monthly_cells
from pipeline.did.cells import Cells
from pipeline.did.clean_controls import clean_controls_cells
from pipeline.did.twfe import twfe_cells
from pipeline.pseudonym import DEMO_KEY
from pipeline.robustness import anticipation, cost_view, leave_one_out, treatment_from_schedule
from schemas.config import EvaluationConfig

PLANTED_ANTICIPATION = -1.2
"""Logit shift of applying in Tampere from 2017-11: strong enough to be seen in two months of one municipality."""


def _load(delivery: Path, path: Path, config: EvaluationConfig) -> None:
    from pipeline.load import load_delivery
    from pipeline.panels import build_panels

    with db.connect(path) as con:
        db.ensure_result_tables(con)
        load_delivery(con, kela_dir=delivery / "kela", avain_dir=None, key=DEMO_KEY, config=config, run_id="t")
        build_panels(con, config)


@pytest.fixture(scope="module")
def anticipated(tmp_path_factory, config) -> dict[str, Cells]:
    """A small delivery with anticipation planted in Tampere, loaded; its cells of both headline outcomes."""
    from fixtures.generator import generate

    out = tmp_path_factory.mktemp("anticipated")
    generate(out, scale="small", seed=11, anticipation=PLANTED_ANTICIPATION)
    path = out / "evaluation.duckdb"
    _load(out, path, config)
    with db.connect(path, read_only=True) as con:
        return {o: monthly_cells(con, o) for o in ("received", "amount_eur")}


@pytest.fixture(scope="module")
def small_cells(loaded_small) -> dict[str, Cells]:
    path, _, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        return {o: monthly_cells(con, o) for o in ("received", "amount_eur")}


def _window(rows) -> dict:
    (row,) = [r for r in rows["robustness"].to_dicts() if r["analysis"] == "anticipation_window"]
    return row


@pytest.mark.parametrize("outcome", ["received", "amount_eur"])
def test_every_leave_one_out_estimate_has_the_sign_of_the_truth(small_cells, loaded_small, config, outcome) -> None:
    truth = loaded_small[1]["att"][outcome]["overall"]
    rows = leave_one_out(small_cells[outcome], outcome, config)
    treated = {r["variant"] for r in rows if r["analysis"] == "leave_one_out_treated"}
    comparison = {r["variant"] for r in rows if r["analysis"] == "leave_one_out_comparison"}
    assert len(treated) == 6 and len(comparison) == 25
    assert {r["estimator"] for r in rows} == {"twfe", "clean_controls"}
    assert all(np.sign(r["estimate"]) == np.sign(truth) for r in rows)


def test_leave_one_out_equals_refitting_without_the_municipality(small_cells, config) -> None:
    cells = small_cells["received"]
    rows = leave_one_out(cells, "received", config)
    code = str(cells.clusters[np.nonzero(cells.treated_clusters)[0][0]])
    keep = cells.clusters != code
    (tw,) = [r for r in rows if r["variant"] == f"without={code}" and r["estimator"] == "twfe"]
    (cc,) = [r for r in rows if r["variant"] == f"without={code}" and r["estimator"] == "clean_controls"]
    assert tw["estimate"] == pytest.approx(twfe_cells(cells.subset(keep)).estimate, rel=1e-12)
    assert cc["estimate"] == pytest.approx(clean_controls_cells(cells.subset(keep)).estimate, rel=1e-12)


def test_anticipation_check_shows_planted_anticipation(anticipated, config) -> None:
    """Anticipation acts on applying: receipt drops significantly; euros (receipt x amount) drop, less sharply."""
    window = _window(anticipation(anticipated["received"], "received", config))
    assert window["ci_high"] < 0, window
    euros = _window(anticipation(anticipated["amount_eur"], "amount_eur", config))
    assert euros["estimate"] < 0, euros


@pytest.mark.parametrize("outcome", ["received", "amount_eur"])
def test_anticipation_check_is_quiet_without_it(small_cells, config, outcome) -> None:
    window = _window(anticipation(small_cells[outcome], outcome, config))
    assert window["ci_low"] <= 0 <= window["ci_high"], window


def test_anticipation_rerun_moves_only_tampere_and_writes_its_event_study(small_cells, config) -> None:
    cells = small_cells["received"]
    shifted = treatment_from_schedule(cells, config.anticipation())
    changed = np.nonzero((shifted != cells.treat).any(axis=1))[0]
    assert [str(cells.clusters[g]) for g in changed] == ["837"]
    assert int((shifted != cells.treat).sum()) == 2
    out = anticipation(cells, "received", config)
    assert set(out["event_study"]["estimator"]) == {"twfe_event_study_anticipation"}
    assert out["event_study"]["event_time"].max() == 49      # Tampere from 2017-11: lags through 2021-12
    assert anticipation(cells, "received", EvaluationConfig(anticipation_schedule={})) == {}


def test_cost_view_scales_the_effect_to_the_pilot(small_cells) -> None:
    cells = small_cells["amount_eur"]
    on = cells.treat != 0
    rows = [{"outcome": "amount_eur", "estimator": "twfe", "subgroup": "all", "estimate": -10.0,
             "ci_low": -15.0, "ci_high": -5.0}]
    (row,) = cost_view(cells, rows, "amount_eur").to_dicts()
    pm = int((cells.n[:, None] * on).sum())
    assert row["pilot_person_months"] == pm
    assert row["effect_total"] == pytest.approx(-10.0 * pm)
    assert row["effect_per_member"] == pytest.approx(-10.0 * pm / cells.n[cells.treated_clusters].sum())
    assert row["effect_total_ci_low"] == pytest.approx(-15.0 * pm)
    assert row["observed_total"] == pytest.approx(cells.sums[on].sum())
    assert row["change_share"] == pytest.approx(-10.0 * pm / (cells.sums[on].sum() + 10.0 * pm))


def test_sdid_on_the_municipality_panel_equals_diff_diff(small_cells, config) -> None:
    """Each adoption block of the pipeline's SDID equals diff-diff's SyntheticDiD on the same cohort means."""
    import warnings

    import polars as pl

    from pipeline.robustness import sdid_row

    dd = pytest.importorskip("diff_diff")
    cells = small_cells["received"]
    row = sdid_row(cells, "received", config)
    assert row is not None and row["estimator"] == "sdid"
    means = cells.sums / cells.n[:, None]
    controls = np.nonzero(~cells.treated_clusters)[0]
    blocks: dict[bytes, list[int]] = {}
    for g in np.nonzero(cells.treated_clusters)[0]:
        blocks.setdefault((cells.treat[g] != 0).tobytes(), []).append(int(g))
    estimates, weights = [], []
    for members in blocks.values():
        on = cells.treat[members[0]] != 0
        last = int(np.flatnonzero(on)[-1])
        units = np.concatenate([controls, members])
        frame = pl.DataFrame({
            "unit": np.repeat(cells.clusters[units].astype(str), last + 1),
            "t": np.tile(np.arange(last + 1), units.size),
            "y": means[units][:, : last + 1].ravel(),
            "ever": np.repeat(np.isin(units, members).astype(int), last + 1),
        })
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = dd.SyntheticDiD(variance_method="placebo", n_bootstrap=20, seed=1).fit(
                frame.to_pandas(), outcome="y", treatment="ever", unit="unit", time="t",
                post_periods=[int(t) for t in np.flatnonzero(on)],
            )
        estimates.append(ref.att)
        weights.append(len(members) * int(on.sum()))
    expected = float(np.dot(weights, estimates) / sum(weights))
    assert row["estimate"] == pytest.approx(expected, abs=1e-6)
