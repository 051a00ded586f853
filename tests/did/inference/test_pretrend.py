"""Randomization inference for the event-study lead test: the F test over-rejects, the permutation test holds size."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.did.cells import Cells
from pipeline.did.event_study import event_study_cells
from pipeline.did.inference.pretrend import pretrend_randomization

G, T, START = 31, 24, 12


def _cells(rng: np.random.Generator, *, trend: float = 0.0) -> tuple[Cells, np.ndarray]:
    """31 clusters of unequal size, 24 months, 6 treated from month 12; cluster-month shocks; optional pre-trend."""
    n = rng.integers(20, 400, G).astype(float)
    treated = np.zeros(G, dtype=bool)
    treated[rng.choice(G, 6, replace=False)] = True
    month = rng.normal(0, 0.02, T)
    level = rng.normal(0.6, 0.05, G)
    shock = rng.normal(0, 0.01, (G, T)) + rng.normal(0, 1, (G, T)) * np.sqrt(0.2 / n)[:, None]
    t = np.arange(T)
    mean = level[:, None] + month[None, :] + shock + trend * treated[:, None] * (t - START)[None, :]
    E = np.where(treated[:, None], (t - START)[None, :].astype(float), np.nan)
    treat = (treated[:, None] & (t >= START)[None, :]).astype(float)
    return Cells(np.arange(G).astype(str), t, n, mean * n[:, None], treat), E


def _pre_period(cells: Cells, E: np.ndarray) -> tuple[Cells, np.ndarray]:
    """The months before the first start, cut out by hand."""
    keep = cells.times < START
    return Cells(cells.clusters, cells.times[keep], cells.n, cells.sums[:, keep],
                 np.zeros((cells.n_clusters, int(keep.sum())))), E[:, keep]


def test_statistic_is_the_full_event_study_lead_test() -> None:
    cells, E = _cells(np.random.default_rng(1))
    full = event_study_cells(cells, E, cv3=False).pretrend_test()
    ri = pretrend_randomization(cells, E, draws=19, seed=0)
    assert ri.n_periods == START
    pre, E_pre = _pre_period(cells, E)
    assert ri.statistic == pytest.approx(event_study_cells(pre, E_pre, cv3=False).pretrend_test().statistic,
                                         rel=1e-12)
    # the same leads, fitted on the pre-period only: equal up to the small-sample factor of the longer panel
    assert abs(ri.statistic / full.statistic - 1) < 0.05
    assert ri.statistic != full.statistic


def test_planted_pre_trend_is_detected() -> None:
    cells, E = _cells(np.random.default_rng(2), trend=0.01)
    assert pretrend_randomization(cells, E, draws=199, seed=0).p_value <= 0.01


def test_p_value_equals_brute_force_refits() -> None:
    """The batched reassignments give the p-value of refitting the event study for each reassignment."""
    cells, E = _cells(np.random.default_rng(3))
    draws, seed = 49, 5
    a = pretrend_randomization(cells, E, draws=draws, seed=seed)
    assert a == pretrend_randomization(cells, E, draws=draws, seed=seed)
    pre, E_pre = _pre_period(cells, E)
    rng = np.random.default_rng(seed)  # the reassignments' draws, as the function takes them
    perms = [rng.permutation(cells.n_clusters) for _ in range(draws)]
    observed = event_study_cells(pre, E_pre, cv3=False).pretrend_test().statistic
    refits = [event_study_cells(pre, E_pre[p], cv3=False).pretrend_test().statistic for p in perms]
    exceed = sum(r >= observed * (1 - 1e-12) for r in refits)
    assert 0 < exceed < draws, "a degenerate case: every or no reassignment exceeds"
    assert a.p_value == (1 + exceed) / (1 + draws)
    assert pretrend_randomization(cells, E, draws=draws, seed=seed + 1).p_value != a.p_value


def test_randomization_holds_size_where_the_f_test_does_not() -> None:
    """On null data the F(L, G-1) test rejects far too often; the permutation p-value does not."""
    rng = np.random.default_rng(4)
    reject_f = reject_ri = 0
    reps = 30
    for _ in range(reps):
        cells, E = _cells(rng)
        reject_f += event_study_cells(cells, E, cv3=False).pretrend_test().p_value < 0.05
        reject_ri += pretrend_randomization(cells, E, draws=39, seed=int(rng.integers(1 << 30))).p_value < 0.05
    assert reject_f >= 8                      # well over the nominal 1.5 of 30
    assert reject_ri <= 5                     # binomial(30, 0.05): P(X > 5) < 0.01
