"""One replication of one placement x DGP: draw the sums, plant the effect, run every method on both scenarios."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipeline.did.cells import Cells

from benchmarks._simulation import dgp, methods


@dataclass(frozen=True)
class Task:
    """A chunk of replications of one placement x DGP, and which of them also run the expensive methods."""

    placement: str
    dgp: str
    first: int
    count: int
    seed: int
    draws: methods.Draws
    effect: dgp.Effect
    sdid_replications: int
    honest_rm_replications: int


def _seeds(t: Task, r: int) -> np.random.SeedSequence:
    """The replication's own seed sequence: the same whatever the chunking."""
    return np.random.SeedSequence([t.seed, ("actual", "random").index(t.placement),
                                   [d.name for d in dgp.DGPS].index(t.dgp), r])


def _truths(n: np.ndarray, treat: np.ndarray, effect: np.ndarray, codes: np.ndarray) -> dict[str, Any]:
    """ATT over treated person-months, per municipality, SDID's (per municipality-month) and the lags 0..23 mean."""
    nd = n[:, None] * treat
    treated = treat.any(axis=1)
    lags = [float(n[treated] @ effect[treated, dgp.START + e] / n[treated].sum()) for e in range(24)]
    return {
        "att": float((nd * effect).sum() / nd.sum()),
        "sdid": float((treat * effect).sum() / treat.sum()),
        "lags": float(np.mean(lags)),
        "by": {str(codes[g]): float((treat[g] * effect[g]).sum() / treat[g].sum()) for g in np.nonzero(treated)[0]},
    }


def replicate(t: Task, r: int) -> list[dict[str, Any]]:
    """Records (one per scenario x method x unit) of replication ``r``."""
    codes, _, pop = dgp.municipalities()
    d = next(x for x in dgp.DGPS if x.name == t.dgp)
    n = dgp.sizes(pop, d.cohort)
    G = len(n)
    ss = _seeds(t, r)
    data_ss, assign_ss, effect_ss, method_ss = ss.spawn(4)
    sums = dgp.draw_sums(np.random.default_rng(data_ss), n, d)
    treat = (dgp.actual_treatment(codes) if t.placement == "actual"
             else dgp.random_treatments(G, 1, np.random.default_rng(assign_ss))[0])
    strength = t.effect.mean * (1 + t.effect.spread * np.random.default_rng(effect_ss).uniform(-1, 1, size=G))
    effect = dgp.effect_path(treat, strength, t.effect, d.persistent_effect)
    truth = _truths(n, treat, effect, codes)
    seeds = method_ss.generate_state(12)
    sdid = r < t.sdid_replications
    rm = r < t.honest_rm_replications
    out = []
    base = {"placement": t.placement, "dgp": t.dgp, "replication": r}
    for scenario, s in (("null", sums), ("effect", sums + n[:, None] * effect)):
        on = scenario == "effect"
        cells = Cells(codes, np.arange(dgp.T), n, s, treat)
        tr = truth if on else {"att": 0.0, "sdid": 0.0, "lags": 0.0, "by": {c: 0.0 for c in truth["by"]}}
        res: dict[tuple, methods.Outcome] = {}
        res.update({(*k, "all", tr["att"]): v for k, v in
                    methods.pooled(cells, seeds[:4], t.draws, effect=on, truth=tr["att"]).items()})
        if sdid:
            res.update({(*k, "all", tr["sdid"]): v for k, v in
                        methods.synthetic(cells, int(seeds[4]), t.draws, effect=on, truth=tr["sdid"]).items()})
        res.update({(*k, "all", tr["lags"]): v for k, v in
                    methods.event_study(cells, int(seeds[5]), t.draws, effect=on, truth_lags=tr["lags"],
                                        honest=True, honest_rm=rm).items()})
        for (code, est, meth), v in methods.per_municipality(cells, list(codes), seeds[6:12], t.draws, effect=on,
                                                              truths=tr["by"]).items():
            units = ("six", code) if t.placement == "actual" else ("six",)
            out += [dict(base, scenario=scenario, estimator=f"per_municipality_{est}", method=meth, unit=u,
                         truth=tr["by"][code], **asdict(v)) for u in units]
        out += [dict(base, scenario=scenario, estimator=est, method=meth, unit=unit, truth=tv, **asdict(o))
                for (est, meth, unit, tv), o in res.items()]
    return out


def run_task(t: Task) -> list[dict[str, Any]]:
    """All replications of a task."""
    out: list[dict[str, Any]] = []
    for r in range(t.first, t.first + t.count):
        out += replicate(t, r)
    return out
