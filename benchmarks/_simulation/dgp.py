r"""Placements and data-generating processes of the inference simulation (municipality x month sums).

A cohort of ``cohort`` persons lives in the 31 municipalities of the reference
file in proportion to their 2016 population, 60 months 2017-01 ... 2021-12.
Person *i* in municipality *g* receives support in month *t* with probability

.. math::

    p_{gt} = b_g + s_t + u_{gt} + \tau_{gt},\qquad
    u_{gt} = \phi\,u_{g,t-1} + \sqrt{1-\phi^2}\,\sigma_u\,\varepsilon_{gt}

(municipality level :math:`b_g \sim U(0.45, 0.75)`, a common month pattern
:math:`s_t`, persistent municipality-month shocks :math:`u_{gt}` whose variance
does not depend on the municipality's size). The municipality's sum is drawn
directly as :math:`S_{gt} = n_g p_{gt} + E_{gt}` with :math:`E_{gt}` the normal
approximation of a sum of :math:`n_g` persistent 0/1 chains (lag-1 correlation
``person_persistence``), sd :math:`\sqrt{n_g b_g(1-b_g)}`: in mean terms this
sampling noise shrinks with size as :math:`1/\sqrt{n_g}`.

The planted effect lowers receipt in pilot municipality *g* by
:math:`\tau_g = \bar\tau(1+\delta_g)`, :math:`\delta_g \sim U(-s, s)` drawn per
replication and municipality (heterogeneous effects), built up linearly over the
first ``ramp_months`` pilot months. The truth of a replication is the sample ATT
over the treated person-months (the pilot months); a municipality's truth is its
own mean effect over its pilot months.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from schemas.config import REFERENCE_MUNICIPALITIES

T = 60
START, LONG_END, SHORT_END = 12, 35, 23  # month indices of 2018-01, 2019-12, 2018-12
PILOT = {"211": "long", "320": "long", "297": "long", "680": "long", "837": "long", "851": "short"}
"""The actual placement: municipality code -> its path (24 months from 2018-01, or Tornio's 12)."""


@dataclass(frozen=True)
class Dgp:
    """One data-generating process: the cohort, the noise and whether the effect outlives the pilot."""

    name: str
    description: str
    cohort: int = 40_000
    shock_sd: float = 0.01
    shock_persistence: float = 0.7
    person_persistence: float = 0.9
    persistent_effect: bool = False


DGPS: tuple[Dgp, ...] = (
    Dgp("size_scaled", "municipality-month shocks sd 0.01 (AR(1) 0.7) beside persons' sampling noise that "
        "dominates in small municipalities (noise of the mean ~ 1/sqrt(n)); the effect ends with the pilot"),
    Dgp("common_shock", "a common-variance municipality-month shock sd 0.03 (AR(1) 0.7) dominating: a cohort 16 "
        "times larger (640,000) makes the persons' sampling noise small, so small municipalities are about as "
        "noisy as large ones in mean terms; the effect ends with the pilot", cohort=640_000, shock_sd=0.03),
    Dgp("persistent", "as size_scaled, but each municipality's effect persists at full strength after its pilot "
        "ends (Tornio from 2019, the others from 2020) to the end of the data", persistent_effect=True),
)


@dataclass(frozen=True)
class Effect:
    """The planted effect: mean strength, relative spread across municipalities, build-up months."""

    mean: float = -0.03
    spread: float = 0.5
    ramp_months: int = 6


def municipalities() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes, names and 2016 populations of the 31 municipalities of the reference file."""
    ref = pl.read_csv(REFERENCE_MUNICIPALITIES, schema_overrides={"kuntanumero": pl.String})
    return (ref["kuntanumero"].to_numpy(), ref["nimi_fi"].to_numpy(),
            ref["vaesto_2016"].to_numpy().astype(float))


def sizes(population: np.ndarray, cohort: int) -> np.ndarray:
    """Persons per municipality, in proportion to the population."""
    return np.maximum(1, np.round(cohort * population / population.sum()))


def paths() -> dict[str, np.ndarray]:
    """The two pilot paths: 'long' 2018-01 ... 2019-12 and 'short' 2018-01 ... 2018-12."""
    t = np.arange(T)
    return {"long": ((t >= START) & (t <= LONG_END)).astype(float),
            "short": ((t >= START) & (t <= SHORT_END)).astype(float)}


def actual_treatment(codes: np.ndarray) -> np.ndarray:
    """(G, T) treatment of the actual placement."""
    p = paths()
    treat = np.zeros((len(codes), T))
    for g, c in enumerate(codes):
        if str(c) in PILOT:
            treat[g] = p[PILOT[str(c)]]
    return treat


def random_treatments(G: int, replications: int, rng: np.random.Generator) -> np.ndarray:
    """(R, G, T): five long paths and one short path on six random distinct municipalities."""
    p = paths()
    treat = np.zeros((replications, G, T))
    for r in range(replications):
        pick = rng.choice(G, size=6, replace=False)
        treat[r, pick[:5]] = p["long"]
        treat[r, pick[5]] = p["short"]
    return treat


def _ar1(rng: np.random.Generator, shape: tuple[int, int], rho: float) -> np.ndarray:
    """Stationary unit-variance AR(1) series along the last axis."""
    z = rng.standard_normal(shape)
    out = np.empty(shape)
    out[:, 0] = z[:, 0]
    for t in range(1, shape[1]):
        out[:, t] = rho * out[:, t - 1] + np.sqrt(1 - rho * rho) * z[:, t]
    return out


def draw_sums(rng: np.random.Generator, n: np.ndarray, d: Dgp) -> np.ndarray:
    """(G, T) municipality x month sums of receipt without any effect."""
    G = len(n)
    t = np.arange(T)
    level = rng.uniform(0.45, 0.75, size=G)
    month = -0.15 * (1 - np.exp(-t / 18)) + 0.02 * np.cos(2 * np.pi * t / 12)
    shocks = d.shock_sd * _ar1(rng, (G, T), d.shock_persistence)
    persons = np.sqrt(n * level * (1 - level))[:, None] * _ar1(rng, (G, T), d.person_persistence)
    return n[:, None] * (level[:, None] + month + shocks) + persons


def effect_path(treat: np.ndarray, strength: np.ndarray, e: Effect, persistent: bool) -> np.ndarray:
    """(G, T) effect in probability units: built up over the first pilot months; after the pilot 0 or full."""
    months_in = np.cumsum(treat, axis=-1)
    ramp = np.minimum(1.0, months_in / e.ramp_months)
    on = treat if not persistent else (months_in > 0).astype(float)
    return on * strength[:, None] * ramp
