r"""Size and coverage of every estimator x inference method of the report, for this pilot's design.

Two placements of the pilot's treatment paths (five 24-month paths
2018-01 ... 2019-12 and Tornio's 12-month path 2018-01 ... 2018-12):

* **actual** -- the six real pilot municipalities (Kangasala, Kemijärvi, Kuopio,
  Raisio, Tampere; Tornio the short path), with their cohort sizes. This is the
  design whose inference the report relies on: under it randomization inference
  is *not* exact by construction, because the real pilot municipalities are one
  fixed set of very different sizes.
* **random** -- six random municipalities in each replication (randomization
  inference exact by construction: the yardstick).

Under several data-generating processes (:mod:`benchmarks._simulation.dgp`:
municipality-month shocks whose noise scales with size; a common-variance shock
dominating; heterogeneous effects that persist after the pilot), each
replication runs, with no effect and with a planted effect that differs by
municipality (the two scenarios share their random numbers), every method of
:mod:`benchmarks._simulation.methods`: TWFE with CV1, CV3, WCR, WCU and
randomization; clean controls with its t interval, WCR, WCU and randomization;
synthetic DiD (placebo SE, randomization; fewer replications); the event study's
joint lead test (CRV1 F, randomization) and the HonestDiD smoothness set at
M = 0 (relative magnitudes at Mbar = 0 on request: ~7 s per set); and each pilot
municipality alone against the 25 comparisons (CV1, WCR, randomization,
Conley-Taber and Ferman-Pinto rank tests, the clean-control placebo t).

Writes ``docs/inference_simulation.json`` (settings, seed, replications,
runtime, and size / coverage / power / width with Monte-Carlo SEs per
placement x DGP x estimator x method) and its rendering
``docs/inference_simulation.md``. Run ``python benchmarks/simulate_inference.py --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root on the path, as for the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks._simulation import dgp, methods  # noqa: E402
from benchmarks._simulation.render import render  # noqa: E402
from benchmarks._simulation.run import Task, run_task  # noqa: E402
from benchmarks._simulation.summary import ALPHA, completed, summarise  # noqa: E402

METHODS: tuple[tuple[str, str, str], ...] = (
    ("twfe", "cv1", "TWFE, CV1 (CRV1) t(G−1)"),
    ("twfe", "cv3", "TWFE, CV3 (cluster jackknife) t(G−1)"),
    ("twfe", "wcr", "TWFE, wild cluster bootstrap WCR, Webb"),
    ("twfe", "wcu", "TWFE, wild cluster bootstrap WCU, Webb"),
    ("twfe", "randomization", "TWFE, randomization inference (|t|)"),
    ("clean_controls", "t", "Clean controls, t(G_T−1)"),
    ("clean_controls", "wcr", "Clean controls, wild cluster bootstrap WCR, Webb"),
    ("clean_controls", "wcu", "Clean controls, wild cluster bootstrap WCU, Webb"),
    ("clean_controls", "randomization", "Clean controls, randomization inference (|t|)"),
    ("sdid", "placebo_se", "Synthetic DiD by block, placebo SE, normal"),
    ("sdid", "randomization", "Synthetic DiD by block, randomization inference (|estimate|)"),
    ("event_study", "lead_test_f", "Event study, joint lead test, CRV1 F(11, 30)"),
    ("event_study", "lead_test_randomization", "Event study, joint lead test, randomization"),
    ("event_study", "honest_sd_m0", "HonestDiD smoothness set, M = 0 (mean of lags 0–23)"),
    ("event_study", "honest_rm_mbar0", "HonestDiD relative-magnitudes set, M̄ = 0 (mean of lags 0–23)"),
    ("per_municipality_twfe", "cv1", "One municipality: TWFE CV1 t(G−1)"),
    ("per_municipality_twfe", "wcr", "One municipality: TWFE WCR, Webb"),
    ("per_municipality_twfe", "randomization", "One municipality: TWFE randomization (26 placements)"),
    ("per_municipality_clean_controls", "placebo_t", "One municipality: clean controls, placebo variance t(G_C−1)"),
    ("per_municipality_clean_controls", "conley_taber", "One municipality: Conley–Taber rank of |estimate|"),
    ("per_municipality_clean_controls", "ferman_pinto", "One municipality: Ferman–Pinto rank, size-scaled"),
)

NOTES = (
    "Truths: the ATT over treated person-months (TWFE, clean controls, per-municipality rows: the "
    "municipality's own ATT), the ATT over treated municipality-months for synthetic DiD (it weights "
    "municipalities equally), the mean of the person-weighted effects at event times 0–23 for the HonestDiD sets.",
    "Coverage of methods whose interval is not computed here (the per-municipality WCR and randomization, "
    "synthetic DiD's randomization) is the non-rejection of H0: effect = truth, the coverage of the "
    "test-inverted set; their width is not measured.",
    "The lead tests are measured for size only (no scenario has a pre-trend); the HonestDiD rows' 'size' is the "
    "share of sets excluding 0 under no effect.",
    "The estimators run on their aggregated path (municipality × month sums and persons per municipality), the "
    "cell-level functions that `from pipeline import did` calls on a balanced panel; tests/benchmarks checks that "
    "the public API gives the same numbers on one replication.",
)


def _tasks(args: argparse.Namespace, draws: methods.Draws, effect: dgp.Effect) -> list[Task]:
    """Chunks of replications: the actual placement first, its DGPs interleaved, then random placement.

    A run stopped early (see ``--checkpoint``) thus has about as many
    replications under every DGP.
    """
    out = []
    for placement, R in (("actual", args.replications), ("random", args.random_replications)):
        for first in range(0, R, args.chunk):
            for d in dgp.DGPS:
                out.append(Task(placement, d.name, first, min(args.chunk, R - first), args.seed, draws, effect,
                                args.sdid_replications if placement == "actual" else 0,
                                args.honest_rm_replications if placement == "actual" else 0))
    return out


def simulate(args: argparse.Namespace) -> None:
    """Run every task (on ``args.workers`` processes), writing the files at checkpoints and at the end."""
    draws = methods.Draws(args.bootstrap_draws, args.randomization_draws, args.sdid_placebo, args.sdid_draws,
                          args.randomization_draws)
    effect = dgp.Effect()
    start = time.perf_counter()
    tasks = _tasks(args, draws, effect)
    records: list[dict[str, Any]] = []
    last = start

    def done(i: int, part: list[dict[str, Any]]) -> None:
        nonlocal last
        records.extend(part)
        now = time.perf_counter()
        print(f"{i + 1}/{len(tasks)} tasks, {now - start:.0f} s", file=sys.stderr, flush=True)
        if i + 1 == len(tasks) or now - last >= args.checkpoint:
            write(document(args, records, draws, effect, now - start, complete=i + 1 == len(tasks)), args.json,
                  args.out)
            last = now

    if args.workers > 1:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for i, part in enumerate(pool.map(run_task, tasks)):
                done(i, part)
    else:
        for i, t in enumerate(tasks):
            done(i, run_task(t))


def document(args: argparse.Namespace, records: list[dict[str, Any]], draws: methods.Draws, effect: dgp.Effect,
             runtime: float, *, complete: bool) -> dict[str, Any]:
    """The JSON document of the records so far."""
    results = summarise(records)
    codes, names, pop = dgp.municipalities()
    n = dgp.sizes(pop, dgp.DGPS[0].cohort)
    pilots = ", ".join(f"{names[g]} {codes[g]} ({n[g]:.0f} persons{', 12 months' if dgp.PILOT[codes[g]] == 'short' else ''})"
                       for g in range(len(codes)) if codes[g] in dgp.PILOT)
    return {
        "seed": args.seed,
        "complete": complete,
        "replications_requested": {"actual": args.replications, "random": args.random_replications,
                                   "sdid": min(args.sdid_replications, args.replications),
                                   "honest_rm": min(args.honest_rm_replications, args.replications)},
        "replications": {"actual": completed(records, "actual"), "random": completed(records, "random"),
                         "sdid": completed(records, "actual", "sdid"),
                         "honest_rm": min(args.honest_rm_replications, completed(records, "actual"))},
        "runtime_seconds": round(runtime, 1),
        "workers": args.workers,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": command(args),
        "settings": {"alpha": ALPHA, "effect_mean": effect.mean, "effect_spread": effect.spread,
                     "effect_ramp_months": effect.ramp_months, "months": dgp.T},
        "draws": asdict(draws),
        "dgps": [asdict(d) for d in dgp.DGPS],
        "design": [
            f"31 municipalities (the reference file), 60 months 2017-01 … 2021-12; cohort in proportion to the "
            f"2016 population ({n.min():.0f} … {n.max():.0f} persons at 40,000).",
            f"Actual placement: {pilots}.",
            f"Planted effect: municipality effects {effect.mean} × (1 ± {effect.spread}) (uniform, drawn per "
            f"replication), built up over the first {effect.ramp_months} pilot months.",
        ],
        "notes": list(NOTES),
        "municipality_names": {str(c): str(m) for c, m in zip(codes, names)},
        "methods": [{"estimator": e, "method": m, "label": lab} for e, m, lab in METHODS],
        "rule": "size_within_2mcse: |size - 0.05| <= 2 sqrt(0.05 * 0.95 / R); "
                "coverage_within_2mcse: |coverage - 0.95| <= 2 sqrt(0.05 * 0.95 / R)",
        "results": sorted(results, key=lambda r: (r["placement"], r["dgp"], r["estimator"], r["method"], r["unit"])),
    }


def command(args: argparse.Namespace) -> str:
    """The command line that reproduces a run."""
    return (f".venv/bin/python benchmarks/simulate_inference.py --replications {args.replications} "
            f"--random-replications {args.random_replications} --sdid-replications {args.sdid_replications} "
            f"--honest-rm-replications {args.honest_rm_replications} --bootstrap-draws {args.bootstrap_draws} "
            f"--randomization-draws {args.randomization_draws} --sdid-placebo {args.sdid_placebo} "
            f"--sdid-draws {args.sdid_draws} --seed {args.seed} --workers {args.workers} "
            f"--json {args.json} --out {args.out}")


def write(doc: dict[str, Any], json_path: Path, md_path: Path) -> None:
    """Write the JSON document and its markdown rendering."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(render(json.loads(json_path.read_text(encoding="utf-8"))), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulation and write the JSON and markdown files."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replications", type=int, default=1000, help="per DGP, actual placement (default 1000)")
    p.add_argument("--random-replications", type=int, default=300, help="per DGP, random placement (default 300)")
    p.add_argument("--sdid-replications", type=int, default=40, help="of these, with synthetic DiD (default 40)")
    p.add_argument("--honest-rm-replications", type=int, default=0,
                   help="of these, with the HonestDiD relative-magnitudes set (~7 s each; default 0)")
    p.add_argument("--bootstrap-draws", type=int, default=399)
    p.add_argument("--randomization-draws", type=int, default=399)
    p.add_argument("--sdid-placebo", type=int, default=20)
    p.add_argument("--sdid-draws", type=int, default=39)
    p.add_argument("--seed", type=int, default=20180101)
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--chunk", type=int, default=20, help="replications per task (default 20)")
    p.add_argument("--checkpoint", type=float, default=300.0,
                   help="seconds between writes of the files so far (default 300; 'complete' false until the end)")
    p.add_argument("--json", type=Path, default=Path("docs/inference_simulation.json"))
    p.add_argument("--out", type=Path, default=Path("docs/inference_simulation.md"))
    p.add_argument("--render-only", action="store_true",
                   help="only rewrite the markdown from the existing JSON file (no simulation)")
    args = p.parse_args(argv)
    if args.render_only:
        args.out.write_text(render(json.loads(args.json.read_text(encoding="utf-8"))), encoding="utf-8")
        print(f"rendered {args.json} to {args.out}")
        return 0
    for name in ("replications", "bootstrap_draws", "randomization_draws", "workers", "chunk"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected at least 1, found {getattr(args, name)}")
    simulate(args)
    print(f"wrote {args.json} and {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
