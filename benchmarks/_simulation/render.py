"""The markdown page of the inference simulation, rendered from its JSON file alone."""

from __future__ import annotations

from typing import Any

from pipeline.simulation_advice import RULE, advice_from

PLACEMENT_TITLES = {
    "actual": "Actual placement: the pilot on its six real municipalities",
    "random": "Random placement: the pilot's paths on six random municipalities in each replication",
}


def _pct(x: float | None, se: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} ({100 * se:.1f})" if se is not None else f"{100 * x:.1f}"


def _width(x: float | None, se: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.4f} ({se:.4f})" if se is not None else f"{x:.4f}"


def _flag(ok: bool | None) -> str:
    return "—" if ok is None else "yes" if ok else "**no**"


def _table(rows: list[dict[str, Any]], labels: dict[tuple[str, str], str], unit_label: bool = False) -> list[str]:
    head = "| method | R | size % (MC SE) | coverage % (MC SE) | power % (MC SE) | median width (MC SE) " \
           "| size ≈ 5 %? | coverage ≈ 95 %? |"
    out = [head.replace("| method |", "| municipality | method |") if unit_label else head,
           "|---" * (9 if unit_label else 8) + "|"]
    for r in rows:
        cells = [labels[r["estimator"], r["method"]], str(r["replications"]), _pct(r["size"], r["size_mcse"]),
                 _pct(r["coverage"], r["coverage_mcse"]), _pct(r["power"], r["power_mcse"]),
                 _width(r["median_width"], r["median_width_mcse"]), _flag(r["size_within_2mcse"]),
                 _flag(r["coverage_within_2mcse"])]
        if unit_label:
            cells.insert(0, r["unit_label"])
        out.append("| " + " | ".join(cells) + " |")
    return out


def render(data: dict[str, Any]) -> str:
    """The page: how it was made, the advice, then one table per placement x DGP."""
    labels = {(m["estimator"], m["method"]): m["label"] for m in data["methods"]}
    order = {(m["estimator"], m["method"]): i for i, m in enumerate(data["methods"])}
    names = data["municipality_names"]
    s, d = data["settings"], data["draws"]
    adv = advice_from(data)
    lines = [
        "# Few-cluster inference for this pilot's design: size and coverage by simulation", "",
        "Written by `benchmarks/simulate_inference.py` (with `docs/inference_simulation.json`, from which this page "
        "is rendered). Reproduce with", "", f"    {data['command']}", "",
        f"Seed {data['seed']}; {data['replications']['actual']} replications per DGP with the actual placement, "
        f"{data['replications']['random']} with random placement; runtime {data['runtime_seconds'] / 60:.1f} min "
        f"({data['runtime_seconds']:.0f} s, {data['workers']} worker processes) on {data['machine']}.", "",
        "## Which p-value to believe", "",
        f"Rule: {RULE}.", "",
    ] + [f"- {x}" for x in adv.sentences] + ["", "## Design", ""]
    lines += [f"- {x}" for x in data["design"]]
    lines += ["", "Data-generating processes:", ""]
    lines += [f"- `{g['name']}`: {g['description']}." for g in data["dgps"]]
    plain = {g["name"]: g for g in data["dgps"]}
    for g in data["dgps"]:
        twin = next((h for h in data["dgps"] if h["name"] != g["name"] and not h["persistent_effect"]
                     and {**h, "name": g["name"], "description": g["description"], "persistent_effect": True} == g),
                    None) if g["persistent_effect"] else None
        if twin is not None and twin["name"] in plain:
            lines += [f"- With no effect `{g['name']}` is `{twin['name']}` drawn again (only the effect differs): "
                      f"its size row is a second, independent measurement of the same rates."]
    lines += [
        "", "Draws: wild cluster bootstrap " f"{d['bootstrap']} (Webb weights), randomization inference "
        f"{d['randomization']} sampled assignments plus the observed one, the lead test's randomization "
        f"{d['pretrend_randomization']} permutations; synthetic DiD {d['sdid_placebo']} placebo replications for "
        f"its standard error and {d['sdid_randomization']} sampled assignments for its randomization test, in the "
        f"first {data['replications']['sdid']} replications of each DGP of the actual placement only (each costs "
        "seconds); the per-municipality randomization test enumerates all 26 placements.", "",
        f"Level {s['alpha']}. Size = rejection rate of H0: effect = 0 with no effect; coverage = share of 95 % sets "
        "holding the truth under the planted effect; power = rejection of H0: 0 under the planted effect. Monte-Carlo "
        "SEs in parentheses (percentage points; for the median width a bootstrap SE). 'size ≈ 5 %?' and "
        "'coverage ≈ 95 %?': within two Monte-Carlo SEs of a correct method, 2 sqrt(0.05 × 0.95 / R), on either "
        "side (an over-conservative method fails too).", "",
    ]
    lines += [f"- {x}" for x in data["notes"]]
    for placement in ("actual", "random"):
        rows_p = [r for r in data["results"] if r["placement"] == placement]
        if not rows_p:
            continue
        lines += ["", f"## {PLACEMENT_TITLES[placement]}", ""]
        for g in data["dgps"]:
            rows = sorted((r for r in rows_p if r["dgp"] == g["name"] and r["unit"] in ("all", "six")),
                          key=lambda r: order[r["estimator"], r["method"]])
            if not rows:
                continue
            lines += [f"### {placement} placement, DGP `{g['name']}`", ""] + _table(rows, labels) + [""]
        per = [r for r in rows_p if r["unit"] not in ("all", "six")]
        if per:
            lines += ["### Each pilot municipality alone against the 25 comparisons", "",
                      "One treated municipality: the smallest attainable p-value of the rank tests "
                      "(Conley–Taber, Ferman–Pinto, randomization) is 1/26 = 3.8 %, so at 5 % they reject only "
                      "at that p-value and an exact rank test rejects a true null 3.8 % of the time: for these "
                      "rows 3.8 %, not 5 %, is the target, and the 'size ≈ 5 %?' flag is too strict for them. "
                      "The rows 'One municipality' in the tables above pool the six municipalities (the mean "
                      "of their rejection and coverage rates per replication; Monte-Carlo SE from the "
                      "replications' means).", ""]
            for g in data["dgps"]:
                rows = sorted((dict(r, unit_label=f"{names[r['unit']]} ({r['unit']})") for r in per
                               if r["dgp"] == g["name"]),
                              key=lambda r: (r["unit_label"], order[r["estimator"], r["method"]]))
                lines += [f"#### DGP `{g['name']}`", ""] + _table(rows, labels, unit_label=True) + [""]
    return "\n".join(lines).rstrip("\n") + "\n"
