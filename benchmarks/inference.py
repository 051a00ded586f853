"""Few-cluster inference against the point estimate: the cost of inference must not grow with the panel.

On the headline outcome of ``panel.person_month`` (``received`` unless
``--outcome`` says otherwise) two things are timed, in one child process per
panel (its peak RSS is its own):

* the point estimate: ``pipeline.estimates.monthly_cells`` (the one DuckDB
  GROUP BY of the panel to municipality x month sums) and ``twfe_cells``;
* inference from those cells, as ``few_cluster_inference`` runs it: exact
  randomization inference (full enumeration of the pilot's 4,417,686
  assignments), 99,999 restricted and 99,999 unrestricted wild cluster
  bootstrap draws with Webb weights (both with their confidence interval).
  The randomization interval (``ci=True``, not used by the pipeline) is timed
  apart.

The panel is a DuckDB file given with ``--db`` (opened read-only) and/or
synthetic panels of ``--rows`` person-months, written to temporary DuckDB files
with the layout of ``panel.person_month`` and ``panel.cohort`` (hex person
keys, 3-digit municipality codes, the real pilot schedule; see
``benchmarks/twfe.py``). Timings are the median of ``--repeat`` runs.

Targets: inference at most 5 s on every panel, and at most the point
estimate's time on the national panel (the largest). When one is missed the
inference of the largest panel is profiled with cProfile and the top functions
are written out.

Usage::

    python benchmarks/inference.py --rows 1_000_000 10_000_000 --out benchmarks/results/inference.md
    python benchmarks/inference.py --db /path/to/evaluation.duckdb --rows
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve()

from _measure import machine, run  # noqa: E402
from twfe import synth_panel  # noqa: E402

INFERENCE_TARGET_SECONDS = 5.0
BOOTSTRAP_DRAWS = 99_999
PROFILE_TOP = 18


# ------------------------------------------------------------------ the panel
def write_duckdb(rows: int, seed: int, path: Path) -> int:
    """A synthetic ``panel.person_month`` + ``panel.cohort`` of about ``rows`` person-months; return the rows."""
    import duckdb
    import polars as pl

    panel = synth_panel(rows, seed, binary=True)
    frame = pl.DataFrame({"person_id": panel.person_key, "month": panel.month,
                          "kuntanumero": panel.kuntanumero, "in_pilot": panel.in_pilot, **panel.outcomes})
    del panel
    con = duckdb.connect(str(path))
    try:
        con.execute("set enable_progress_bar = false").fetchall()
        con.execute("create schema panel").fetchall()
        con.register("frame", frame)
        con.execute("""
            create table panel.cohort as
            select sha256(person_id::varchar) as person_key, any_value(kuntanumero)::varchar as baseline_kuntanumero
            from frame group by person_id""").fetchall()
        con.execute("""
            create table panel.person_month as
            select sha256(person_id::varchar) as person_key, month, kuntanumero::varchar as kuntanumero,
                   in_pilot::tinyint as in_pilot, received::tinyint as received
            from frame order by person_key, month""").fetchall()
        n = con.execute("select count(*) from panel.person_month").fetchall()[0][0]
    finally:
        con.close()
    return int(n)


# ------------------------------------------------------------------ the child
def _median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median wall and CPU (all threads) seconds of ``repeat`` calls, and the last call's result."""
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), out


def child(db: str, outcome: str, repeat: str, profile: str) -> None:
    """Time the point estimate and the inference on one panel; print one JSON line (and the profile if asked)."""
    import duckdb
    import numpy as np

    from pipeline.did.inference.randomization import design_paths
    from pipeline.estimates import monthly_cells
    from pipeline.did.twfe import twfe_cells
    from pipeline.did.inference.bootstrap import wild_cluster_bootstrap
    from pipeline.did.inference.randomization import randomization_test
    from schemas.config import EvaluationConfig

    inf = EvaluationConfig().inference
    k = int(repeat)
    con = duckdb.connect(db, read_only=True)
    con.execute("set enable_progress_bar = false").fetchall()
    rows = int(con.execute("select count(*) from panel.person_month").fetchall()[0][0])

    def point() -> Any:
        cells = monthly_cells(con, outcome)
        if cells is None:
            raise RuntimeError(f"{db}: panel.person_month is not a balanced municipality x month panel")
        return cells, twfe_cells(cells, alpha=inf.alpha)

    t_point, c_point, (cells, tw) = _median_time(point, k)
    t_group, _, _ = _median_time(lambda: monthly_cells(con, outcome), k)
    paths = design_paths(cells)

    def ri(ci: bool) -> Any:
        return randomization_test(cells, paths, max_assignments=inf.randomization_max_assignments,
                                  draws=inf.randomization_draws, seed=inf.seed, alpha=inf.alpha, ci=ci)

    def wild(restricted: bool) -> Any:
        return wild_cluster_bootstrap(cells, draws=BOOTSTRAP_DRAWS, weights="webb", restricted=restricted,
                                      alpha=inf.alpha, seed=inf.seed)

    t_ri, c_ri, r_ri = _median_time(lambda: ri(False), k)
    t_wcr, c_wcr, r_wcr = _median_time(lambda: wild(True), k)
    t_wcu, c_wcu, r_wcu = _median_time(lambda: wild(False), k)
    t_ri_ci, _, r_ri_ci = _median_time(lambda: ri(True), k)
    out = {
        "rows": rows, "persons": int(np.sum(cells.n)), "clusters": cells.n_clusters, "periods": cells.n_periods,
        "point_seconds": t_point, "point_cpu": c_point, "inference_cpu": c_ri + c_wcr + c_wcu,
        "group_by_seconds": t_group, "estimate": tw.estimate, "se": tw.std_error,
        "ri_seconds": t_ri, "ri_p": r_ri.p_value, "ri_assignments": r_ri.n_assignments, "ri_exact": r_ri.exact,
        "ri_ci_seconds": t_ri_ci, "ri_ci": [r_ri_ci.ci_low, r_ri_ci.ci_high],
        "wcr_seconds": t_wcr, "wcr_p": r_wcr.p_value, "wcr_ci": [r_wcr.ci_low, r_wcr.ci_high],
        "wcu_seconds": t_wcu, "wcu_p": r_wcu.p_value, "wcu_ci": [r_wcu.ci_low, r_wcu.ci_high],
        "draws": r_wcr.draws,
    }
    if profile == "yes":
        prof = cProfile.Profile()
        prof.enable()
        ri(False)
        wild(True)
        wild(False)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(PROFILE_TOP)
        out["profile"] = _trim_profile(buf.getvalue())
    con.close()
    print(json.dumps(out))


def _trim_profile(text: str) -> str:
    """The table part of a pstats listing, paths shortened to the package."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    keep = [line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/lib/python3.11/site-packages/", "")
            for line in lines[start:] if line.strip()]
    return "\n".join(keep)


# ------------------------------------------------------------------ report
def inference_seconds(r: dict[str, Any]) -> float:
    """What ``few_cluster_inference`` pays: randomization test (no interval) + WCR + WCU."""
    return float(r["ri_seconds"] + r["wcr_seconds"] + r["wcu_seconds"])


def markdown(results: list[tuple[str, dict[str, Any]]], outcome: str, repeat: int) -> str:
    """The results as a markdown fragment."""
    from importlib.metadata import version

    mach = machine()
    national_name, national = max(results, key=lambda kv: kv[1]["rows"])
    lines = [
        f"### Few-cluster inference vs the point estimate (`{outcome}`)",
        "",
        f"Median of {repeat} runs per step, one child process per panel (peak RSS = its `ru_maxrss`). "
        "Point estimate = `monthly_cells` (DuckDB GROUP BY joined to `panel.cohort`) + `twfe_cells`. "
        "Inference = exact randomization test (full enumeration, no interval, as `few_cluster_inference` "
        f"runs it) + WCR + WCU, {BOOTSTRAP_DRAWS:,} Webb draws each with their intervals.",
        "",
        "| panel | rows | point estimate (s) | of which GROUP BY (s) | randomization, exact (s) | WCR (s) "
        "| WCU (s) | inference total (s) | inference / point | CPU: point, inference (s) | RI interval too (s) "
        "| peak RSS (GB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results:
        total = inference_seconds(r)
        lines.append(
            f"| {name} | {r['rows']:,} | {r['point_seconds']:.2f} | {r['group_by_seconds']:.2f} | "
            f"{r['ri_seconds']:.2f} | {r['wcr_seconds']:.2f} | {r['wcu_seconds']:.2f} | {total:.2f} | "
            f"{total / r['point_seconds']:.2f}x | {r['point_cpu']:.2f}, {r['inference_cpu']:.2f} | "
            f"{r['ri_ci_seconds']:.2f} | {r['peak_rss_bytes'] / 1e9:.2f} |")
    lines += ["", "| panel | estimate | SE (CRV1) | RI p (assignments) | WCR p [CI] | WCU p [CI] | RI CI |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, r in results:
        lines.append(
            f"| {name} | {r['estimate']:.6f} | {r['se']:.6f} | {r['ri_p']:.4f} ({r['ri_assignments']:,}"
            f"{', exact' if r['ri_exact'] else ''}) | {r['wcr_p']:.4f} [{r['wcr_ci'][0]:.5f}, {r['wcr_ci'][1]:.5f}] | "
            f"{r['wcu_p']:.4f} [{r['wcu_ci'][0]:.5f}, {r['wcu_ci'][1]:.5f}] | "
            f"[{r['ri_ci'][0]:.5f}, {r['ri_ci'][1]:.5f}] |")
    within = all(inference_seconds(r) <= INFERENCE_TARGET_SECONDS for _, r in results)
    below = inference_seconds(national) <= national["point_seconds"]
    spread = [inference_seconds(r) for _, r in results]
    small = min(results, key=lambda kv: kv[1]["rows"])[1]
    lines += [
        "",
        f"- Inference <= {INFERENCE_TARGET_SECONDS:g} s on every panel: **{'met' if within else 'missed'}** "
        f"(wall max {max(spread):.2f} s; CPU max {max(r['inference_cpu'] for _, r in results):.2f} s).",
        f"- Inference <= point estimate on the national panel ({national_name}, {national['rows']:,} rows): "
        f"**{'met' if below else 'missed'}** (wall {inference_seconds(national):.2f} s vs "
        f"{national['point_seconds']:.2f} s; CPU {national['inference_cpu']:.2f} s vs {national['point_cpu']:.2f} s).",
    ]
    if national is not small:
        grow = national["rows"] / small["rows"]
        lines.append(
            f"- Growth from {small['rows']:,} to {national['rows']:,} rows ({grow:.0f}x): inference "
            f"{inference_seconds(national) / inference_seconds(small):.2f}x wall, "
            f"{national['inference_cpu'] / small['inference_cpu']:.2f}x CPU; point estimate "
            f"{national['point_seconds'] / small['point_seconds']:.2f}x wall, "
            f"{national['point_cpu'] / small['point_cpu']:.2f}x CPU. Inference reads only the "
            f"{national['clusters']} x {national['periods']} cells.")
    profiled = [(name, r) for name, r in results if "profile" in r]
    for name, r in profiled:
        lines += ["", f"cProfile of the inference on {name} (one run, sorted by own time):", "", "```",
                  r["profile"], "```"]
    lines += [
        "",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['ram']} RAM, Python {mach['python']}, load "
        f"average {mach['load']} (1/5/15 min) when written: the machine is shared, so wall times include "
        "waiting for a core; CPU times (all threads) do not. Packages: "
        + ", ".join(f"{p} {version(p)}" for p in ("numpy", "scipy", "duckdb", "polars")) + ".",
        "",
    ]
    return "\n".join(lines)


def _measure_panel(db: Path, outcome: str, repeat: int, profile: bool) -> dict[str, Any]:
    m = run(f"{HERE}:child", str(db), outcome, str(repeat), "yes" if profile else "no")
    return {**m.last_json(), "peak_rss_bytes": m.peak_rss_bytes}


def main() -> None:
    """Measure every panel in its own process, profile the largest if a target is missed, write the markdown."""
    from schemas.config import EvaluationConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="DuckDB file with panel.person_month and panel.cohort built")
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000, 10_000_000],
                        help="synthetic panel sizes (person-months); none with --db to use only the file")
    parser.add_argument("--outcome", default=EvaluationConfig().headline_outcomes[0],
                        help="monthly outcome column (synthetic panels have only 'received')")
    parser.add_argument("--seed", type=int, default=20180101)
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; the median is reported")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "inference.md")
    args = parser.parse_args()
    if args.db is not None and not args.db.is_file():
        parser.error(f"{args.db}: no such DuckDB file")
    if args.db is None and not args.rows:
        parser.error("nothing to measure: give --db and/or --rows")
    if args.rows and args.outcome != "received":
        parser.error("synthetic panels have only the 'received' outcome")
    results: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="inference_bench_") as tmp:
        panels = [(f"`{args.db.name}`", args.db)] if args.db is not None else []
        for rows in args.rows:
            path = Path(tmp) / f"panel_{rows}.duckdb"
            n = write_duckdb(rows, args.seed, path)
            panels.append((f"synthetic {n / 1e6:.1f} M", path))
        for name, path in panels:
            r = _measure_panel(path, args.outcome, args.repeat, profile=False)
            results.append((name, r))
            print(f"{name}: point {r['point_seconds']:.2f} s, inference {inference_seconds(r):.2f} s "
                  f"(RI {r['ri_seconds']:.2f}, WCR {r['wcr_seconds']:.2f}, WCU {r['wcu_seconds']:.2f})",
                  file=sys.stderr)
        national_name, national = max(results, key=lambda kv: kv[1]["rows"])
        missed = (any(inference_seconds(r) > INFERENCE_TARGET_SECONDS for _, r in results)
                  or inference_seconds(national) > national["point_seconds"])
        if missed:
            path = dict(panels)[national_name]
            profile = _measure_panel(path, args.outcome, 1, profile=True)["profile"]
            national["profile"] = profile
    text = markdown(results, args.outcome, args.repeat)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
