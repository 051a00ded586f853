"""Randomization inference for the event-study lead test: the F test over-rejects, the permutation test holds size."""

from __future__ import annotations

import numpy as np

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


def test_statistic_is_the_full_event_study_lead_test() -> None:
    cells, E = _cells(np.random.default_rng(1))
    full = event_study_cells(cells, E, cv3=False).pretrend_test()
    ri = pretrend_randomization(cells, E, draws=19, seed=0)
    assert ri.n_periods == START
    assert ri.statistic == np.float64(ri.statistic)
    # the same leads, fitted on the pre-period only: equal up to the small-sample factor of the longer panel
    assert abs(ri.statistic / full.statistic - 1) < 0.05


def test_planted_pre_trend_is_detected() -> None:
    cells, E = _cells(np.random.default_rng(2), trend=0.01)
    assert pretrend_randomization(cells, E, draws=199, seed=0).p_value <= 0.01


def test_seeded_and_bounded() -> None:
    cells, E = _cells(np.random.default_rng(3))
    a = pretrend_randomization(cells, E, draws=49, seed=5)
    b = pretrend_randomization(cells, E, draws=49, seed=5)
    assert a == b
    assert 1 / 50 <= a.p_value <= 1


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
