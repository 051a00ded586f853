"""Which p-value to believe for the pilot: a stated rule applied to the committed inference simulation.

``benchmarks/simulate_inference.py`` writes ``docs/inference_simulation.json``:
size, coverage and their Monte-Carlo standard errors for every estimator x
inference method, under several data-generating processes, with the pilot's
treatment paths on the six real pilot municipalities (the *actual* placement)
and on random ones. :func:`advice` reads it and applies :data:`RULE`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIMULATION_JSON = "docs/inference_simulation.json"
"""The committed simulation, relative to the repository root."""

HEADLINE_ESTIMATOR = "clean_controls"
METHOD_ORDER: tuple[str, ...] = ("t", "wcr", "wcu", "randomization")
"""The robust estimator's methods in the order the rule tries them."""

RULE = ("the headline method is the first method of the robust estimator (clean_controls: t, WCR, WCU, "
        "randomization, in that order) whose size is within 2 Monte-Carlo SEs of 5 % and whose coverage is within "
        "2 Monte-Carlo SEs of 95 % under every data-generating process of the actual design (the SE of a correct "
        "method, sqrt(0.05 x 0.95 / R)); if none qualifies, there is no headline method")


@dataclass(frozen=True)
class Advice:
    """The rule's answer: the headline method (None if none qualifies) and the sentences the report can show."""

    estimator: str
    method: str | None
    label: str | None
    believe: tuple[str, ...]
    do_not_believe: tuple[str, ...]
    sentences: tuple[str, ...]


class SimulationFileError(ValueError):
    """The simulation file lacks the rows the rule needs."""


def actual_rows(data: dict[str, Any], estimator: str, method: str) -> list[dict[str, Any]]:
    """The actual placement's rows (unit 'all') of one estimator x method, one per DGP, in the file's DGP order."""
    by_dgp = {r["dgp"]: r for r in data["results"] if r["placement"] == "actual" and r["unit"] == "all"
              and r["estimator"] == estimator and r["method"] == method}
    return [by_dgp[d["name"]] for d in data["dgps"] if d["name"] in by_dgp]


def qualifies(data: dict[str, Any], estimator: str, method: str) -> bool:
    """Size and coverage within 2 Monte-Carlo SEs of 5 % and 95 % under every DGP of the actual design."""
    rows = actual_rows(data, estimator, method)
    return len(rows) == len(data["dgps"]) and all(
        r["size_within_2mcse"] is True and r["coverage_within_2mcse"] is True for r in rows)


def _rates(rows: list[dict[str, Any]], key: str) -> str:
    return ", ".join(f"{r[key]:.1%} ({r['dgp']})" for r in rows)


def _closest(data: dict[str, Any], R: int) -> str:
    """The robust estimator's method nearest to qualifying, and where it misses."""
    se0 = (0.05 * 0.95 / R) ** 0.5
    labels = {(m["estimator"], m["method"]): m["label"] for m in data["methods"]}

    def worst(method: str) -> float:
        rows = actual_rows(data, HEADLINE_ESTIMATOR, method)
        if len(rows) != len(data["dgps"]) or any(r["size"] is None or r["coverage"] is None for r in rows):
            return float("inf")
        return max(max(abs(r["size"] - 0.05), abs(r["coverage"] - 0.95)) for r in rows)

    best = min(METHOD_ORDER, key=worst)
    rows = actual_rows(data, HEADLINE_ESTIMATOR, best)
    misses = [f"{k} {r[k]:.1%} under {r['dgp']}" for r in rows for k, target in (("size", 0.05), ("coverage", 0.95))
              if abs(r[k] - target) > 2 * se0]
    return (f"Closest: {labels[HEADLINE_ESTIMATOR, best]} (size {_rates(rows, 'size')}; coverage "
            f"{_rates(rows, 'coverage')}), which misses only on {', '.join(misses)} against 5 % ± {2 * se0:.1%} "
            f"and 95 % ± {2 * se0:.1%}.")


def advice_from(data: dict[str, Any]) -> Advice:
    """Apply :data:`RULE` to a loaded simulation file."""
    labels = {(m["estimator"], m["method"]): m["label"] for m in data["methods"]}
    if not any(r["placement"] == "actual" for r in data["results"]):
        raise SimulationFileError("simulation file: expected rows of the actual placement, found none")
    R = data["replications"]["actual"]
    chosen = next((m for m in METHOD_ORDER if qualifies(data, HEADLINE_ESTIMATOR, m)), None)
    believe, reject = [], []
    for (est, meth), label in labels.items():
        rows = actual_rows(data, est, meth)
        if est not in ("twfe", "clean_controls") or len(rows) != len(data["dgps"]) or rows[0]["coverage"] is None:
            continue
        (believe if qualifies(data, est, meth) else reject).append(
            f"{label}: size {_rates(rows, 'size')}, coverage {_rates(rows, 'coverage')}")
    if chosen is None:
        head = (f"No method of the clean-control estimator held its size and coverage under every simulated "
                f"data-generating process with the pilot on its six real municipalities ({R} replications each): "
                f"by this rule no p-value of this analysis can be taken at face value; report the estimates with "
                f"that caveat. {_closest(data, R)}")
        label = None
    else:
        label = labels[HEADLINE_ESTIMATOR, chosen]
        rows = actual_rows(data, HEADLINE_ESTIMATOR, chosen)
        head = (f"Believe the {label} p-value and interval: with the pilot on its six real municipalities "
                f"({R} simulated replications under each data-generating process) it rejected a true null in "
                f"{_rates(rows, 'size')} of the replications and its 95 % interval covered the true effect in "
                f"{_rates(rows, 'coverage')}.")
    sentences = [head]
    if reject:
        sentences.append("Do not take these at face value (size or coverage off by more than two Monte-Carlo "
                         "standard errors under some data-generating process): " + "; ".join(reject) + ".")
    return Advice(HEADLINE_ESTIMATOR, chosen, label, tuple(believe), tuple(reject), tuple(sentences))


def advice(path: str | Path = SIMULATION_JSON) -> Advice:
    """Read the simulation file at ``path`` and apply :data:`RULE`."""
    return advice_from(json.loads(Path(path).read_text(encoding="utf-8")))
