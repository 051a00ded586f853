r"""Dynamic, heterogeneous effects that outlast the pilot: TWFE is biased, the clean-control estimator is not.

Estimand
--------
The average effect on the treated over the treated pilot person-months (ATT):

.. math::

    \theta = \frac{1}{\sum_{g \in \mathcal T} n_g |P_g|}
             \sum_{g \in \mathcal T} \sum_{t \in P_g} \sum_{i \in g} \tau_{it}

where :math:`P_g` are the months of the pilot schedule of municipality *g*
(2018-01 ... 2019-12 for five pilots, 2018-01 ... 2018-12 for the one that
exits) and :math:`\tau_{it} = Y_{it}(1) - Y_{it}(0)` is the planted effect. It is
computed exactly from the planted effects of this sample (a sample ATT), so
it is the number an unbiased estimator should recover, whatever the noise.
Effects that persist after a municipality leaves the pilot are part of the data
but not of the estimand: they are what a "treated vs. not treated this month"
comparison mistakes for a baseline.

Data-generating process (built here in numpy, no generator)
-----------------------------------------------------------
31 municipalities with persons in proportion to their 2016 population, 60 months
2017-01 ... 2021-12, the real pilot schedule, and

.. math::

    y_{it} = a_i + s_t + u_{g(i)t} + \tau_{it} + e_{it},\qquad
    \tau_{it} = (1 + h_i)\,\tau_{g(i)t}

with person effects :math:`a_i`, a common month pattern :math:`s_t`,
municipality-month shocks :math:`u_{gt}`, person-month noise :math:`e_{it}` and
person heterogeneity :math:`h_i \sim U(-1/2, 1/2)`. For a pilot municipality
with strength :math:`c_g` (different in each), in month *k* of its pilot
:math:`\tau_{gt} = -c_g (k + 1)/24` (the effect builds up), and *j* months after
its last pilot month :math:`\tau_{gt} = \tau_{g,\text{last}}\,\rho^{j}` with
:math:`\rho = 0.95` (it persists and decays slowly). Comparison municipalities
have no effect; there is no anticipation, so trends are parallel.

Two-way fixed effects with one pilot dummy compares pilot months with the
municipality's other months, the post-pilot months included, and uses the
exiting municipality's post-pilot months as controls for the others: it is
pulled towards zero. The clean-control estimator compares each pilot month
with the municipality's own pre-pilot months and with never-treated
municipalities only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from pipeline.did.panel import cells_from_panel
from pipeline.did.twfe import twfe
from pipeline.did.clean_controls import clean_controls_cells
from schemas.config import REFERENCE_MUNICIPALITIES

T = 60  # 2017-01 ... 2021-12
COHORT = 2_500  # persons over the 31 municipalities
STRENGTH = {"211": 0.12, "320": 0.08, "297": 0.10, "680": 0.14, "837": 0.12, "851": 0.06}
"""c_g: the effect reached after 24 pilot months (a fall in the outcome), by pilot municipality."""
PERSISTENCE = 0.95
COLS = dict(unit="person", time="month", outcome="y", treatment="in_pilot", cluster="kunta")


@dataclass(frozen=True)
class Noise:
    """Standard deviations of the municipality-month shocks and the person-month noise."""

    municipality_month: float
    person_month: float


REALISTIC = Noise(municipality_month=0.01, person_month=0.30)
LOW = Noise(municipality_month=0.0, person_month=0.001)


def _month(ym: str) -> int:
    """Index of 'YYYY-MM' counted from 2017-01."""
    year, month = (int(x) for x in ym.split("-"))
    return (year - 2017) * 12 + month - 1


def _municipalities() -> pl.DataFrame:
    """Codes, persons and pilot windows (first and last month index, -1 for comparison municipalities)."""
    ref = pl.read_csv(REFERENCE_MUNICIPALITIES, schema_overrides={"kuntanumero": pl.String})
    share = ref["vaesto_2016"].to_numpy() / ref["vaesto_2016"].sum()
    return pl.DataFrame({
        "kunta": ref["kuntanumero"],
        "persons": np.maximum(8, np.round(share * COHORT)).astype(np.int64),
        "first": [_month(a) if a else -1 for a in ref["pilotti_alku"].fill_null("")],
        "last": [_month(b) if b else -1 for b in ref["pilotti_loppu"].fill_null("")],
    })


def municipality_effects(first: np.ndarray, last: np.ndarray, strength: np.ndarray, *, dynamic: bool) -> np.ndarray:
    """(G, T) effect tau_gt: a build-up over the pilot and a slow decay after it (``dynamic``).

    With ``dynamic=False`` the effect is ``-strength`` in every pilot month and
    zero otherwise (static, ends at exit): the case in which TWFE is unbiased.
    """
    t = np.arange(T)[None, :]
    start, end, c = first[:, None], last[:, None], strength[:, None]
    during = (start >= 0) & (t >= start) & (t <= end)
    if not dynamic:
        return np.where(during, -c, 0.0)
    at_exit = -c * (end - start + 1) / 24
    build = -c * (t - start + 1) / 24
    after = at_exit * PERSISTENCE ** np.maximum(t - end, 0)
    return np.where(during, build, np.where((start >= 0) & (t > end), after, 0.0))


def pilot_panel(noise: Noise, *, seed: int, dynamic: bool = True) -> tuple[pl.DataFrame, float, dict[str, float]]:
    """A long person x month panel, its true ATT and each pilot municipality's true ATT (see the module docstring)."""
    rng = np.random.default_rng(seed)
    muni = _municipalities()
    G = muni.height
    n = muni["persons"].to_numpy()
    first, last = muni["first"].to_numpy(), muni["last"].to_numpy()
    codes = muni["kunta"].to_list()
    strength = np.array([STRENGTH.get(code, 0.0) for code in codes])
    tau_g = municipality_effects(first, last, strength, dynamic=dynamic)
    t = np.arange(T)
    D = ((first[:, None] >= 0) & (t >= first[:, None]) & (t <= last[:, None])).astype(np.int8)

    g = np.repeat(np.arange(G), n)
    U = len(g)
    h = rng.uniform(-0.5, 0.5, size=U)
    tau = (1 + h)[:, None] * tau_g[g]
    s = -0.002 * t + 0.03 * np.cos(2 * np.pi * t / 12)
    u = noise.municipality_month * rng.standard_normal((G, T))
    y = (rng.normal(0.6, 0.2, size=U)[:, None] + s[None, :] + u[g] + tau
         + noise.person_month * rng.standard_normal((U, T)))

    treated_pm = D[g].astype(bool)
    att = float(tau[treated_pm].mean())
    by_municipality = {codes[k]: float(tau[(g == k)[:, None] & treated_pm].mean())
                       for k in range(G) if strength[k] > 0}
    panel = pl.DataFrame({
        "person": np.repeat(np.arange(U), T),
        "month": np.tile(t, U),
        "kunta": np.repeat(np.array(codes)[g], T),
        "in_pilot": D[g].ravel(),
        "y": y.ravel(),
    })
    return panel, att, by_municipality


@pytest.fixture(scope="module")
def realistic() -> tuple[pl.DataFrame, float, dict[str, float]]:
    return pilot_panel(REALISTIC, seed=2018)


@pytest.fixture(scope="module")
def low_noise() -> tuple[pl.DataFrame, float, dict[str, float]]:
    return pilot_panel(LOW, seed=2019)


def test_design_is_the_pilot(realistic) -> None:
    panel, att, by_municipality = realistic
    cells = cells_from_panel(panel, **COLS)
    months_treated = sorted(int(k) for k in cells.treat.sum(axis=1) if k)
    assert (cells.n_clusters, cells.n_periods) == (31, 60)
    assert months_treated == [12, 24, 24, 24, 24, 24]
    assert set(by_municipality) == set(STRENGTH)
    assert att < 0


def test_twfe_is_biased_towards_zero(realistic) -> None:
    """More than 40 % of the ATT is lost, and the 95 % interval excludes the truth."""
    panel, att, _ = realistic
    res = twfe(panel, **COLS)
    assert res.path == "aggregated"
    assert abs(res.estimate - att) > 0.4 * abs(att)
    assert not res.ci_low <= att <= res.ci_high
    assert att < res.estimate  # the persisting effect in the "untreated" months shrinks it


def test_clean_controls_interval_contains_the_truth(realistic) -> None:
    panel, att, _ = realistic
    res = clean_controls_cells(cells_from_panel(panel, **COLS))
    assert res.ci_low <= att <= res.ci_high
    assert res.n_treated_clusters == 6 and res.df == 5


def test_clean_controls_recovers_the_truth_with_low_noise(low_noise) -> None:
    """Within 1 % of the ATT overall and 2 % for each municipality (the exiting one included); TWFE is still off."""
    panel, att, by_municipality = low_noise
    res = clean_controls_cells(cells_from_panel(panel, **COLS))
    assert res.estimate == pytest.approx(att, rel=0.01)
    for code, truth in by_municipality.items():
        assert res.by_cluster[code] == pytest.approx(truth, rel=0.02), code
    assert abs(twfe(panel, **COLS).estimate - att) > 0.4 * abs(att)


def test_twfe_is_unbiased_when_the_effect_is_static_and_stops_at_exit() -> None:
    """The contrast: with a constant effect that ends with the pilot both estimators find the ATT."""
    panel, att, _ = pilot_panel(LOW, seed=2020, dynamic=False)
    tw = twfe(panel, **COLS)
    cc = clean_controls_cells(cells_from_panel(panel, **COLS))
    assert tw.estimate == pytest.approx(att, rel=0.02)
    assert cc.estimate == pytest.approx(att, rel=0.02)
