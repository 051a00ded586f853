"""The robust estimator recovers the planted effects of truth.json within its 95 % intervals."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline import db
from pipeline.estimates import avain_outcomes, monthly_cells
from pipeline.did.clean_controls import clean_controls_cells


@pytest.mark.parametrize("outcome", ["received", "amount_eur"])
def test_clean_controls_interval_contains_overall_and_municipality_truth(loaded_small, outcome) -> None:
    path, truth, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        cells = monthly_cells(con, outcome)
    res = clean_controls_cells(cells)
    true = truth["att"][outcome]
    assert res.ci_low <= true["overall"] <= res.ci_high
    treated = cells.treated_clusters
    for g in range(cells.n_clusters):
        if not treated[g]:
            continue
        mask = ~treated
        mask[g] = True
        one = clean_controls_cells(cells.subset(mask))
        code = str(cells.clusters[g])
        assert one.ci_low <= true["by_municipality"][code] <= one.ci_high, code


def test_avain_effect_recovered_with_client_present(loaded_small, config) -> None:
    path, truth, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        out = avain_outcomes(con, config, ["avain_situation"])["did_estimates"]
    row = out.filter(pl.col("outcome") == "avain_situation_client_present").row(0, named=True)
    assert row["ci_low"] <= truth["avain"]["situation_effect"] <= row["ci_high"]
