"""An analysis with one treated municipality publishes no CV1, CV3 or wild-bootstrap p-value or interval, says why,
and keeps the randomization p-value, whose smallest attainable value it states."""

from __future__ import annotations

import numpy as np

from pipeline.did.cells import Cells
from pipeline.estimates import INVALID_WITH_ONE_TREATED, estimate_cells
from schemas.config import EvaluationConfig

CONFIG = EvaluationConfig(inference={"bootstrap_draws": 99, "randomization_max_assignments": 1_000,
                                     "subgroup_max_assignments": 1_000, "randomization_draws": 99})


def _cells(n_treated: int, G: int = 12, T: int = 24) -> Cells:
    rng = np.random.default_rng(5)
    n = rng.integers(50, 300, G).astype(float)
    mean = rng.normal(0.6, 0.05, G)[:, None] + rng.normal(0, 0.01, (G, T))
    treat = np.zeros((G, T))
    treat[:n_treated, 12:] = 1
    return Cells(np.array([f"{g:03d}" for g in range(G)]), np.arange(T), n, mean * n[:, None], treat)


def test_one_treated_cluster_withholds_the_invalid_methods() -> None:
    rows, inference = estimate_cells(_cells(1), outcome="received", subgroup="municipality=000", config=CONFIG,
                                     infer=True)
    assert {r["estimator"] for r in rows} == {"twfe", "clean_controls"}
    for row in rows:
        assert all(row[c] is None for c in INVALID_WITH_ONE_TREATED if c in row), row
        assert row["estimate"] is not None and "1/12" in row["validity_note"]
    ri = [r for r in inference if r["method"] == "randomization"]
    assert ri and all(r["p_value"] is not None and r["p_value"] >= 1 / 12 for r in ri)
    others = [r for r in inference if r["method"] != "randomization"]
    assert others and all(r["p_value"] is None and "not valid" in r["validity_note"] for r in others)


def test_several_treated_clusters_publish_every_method() -> None:
    rows, inference = estimate_cells(_cells(3), outcome="received", subgroup="all", config=CONFIG, infer=True)
    twfe = next(r for r in rows if r["estimator"] == "twfe")
    assert twfe["p_value"] is not None and twfe["p_value_wild_bootstrap"] is not None
    assert "validity_note" not in twfe
    assert all(r["p_value"] is not None for r in inference if r["method"] != "cv3_jackknife")
