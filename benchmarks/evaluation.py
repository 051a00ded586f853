"""Every stage of ``kokeilu run`` on a national-scale delivery, beside DuckDB's bare read and pyfixest.

Each stage runs in its own child process on the same database, in the order of a
run (load, validate, panels, estimate with inference, report), so each has its
own wall time and peak RSS; the baselines run the same way:

* DuckDB's bare read of the same files (``read_csv`` of every Kela-style CSV,
  the correction's included, with the contract's types; ``read_parquet`` of the
  Parquet month; ``read_csv`` of the AVAIN-style files) into tables -- what no
  loader can beat;
* pyfixest's ``feols`` of the headline TWFE regression on ``panel.person_month``.

Targets (ratios, same run): the whole evaluation <= 3x the bare read, peak RSS <=
4 GB, TWFE <= 1.0x pyfixest (see ``benchmarks/twfe.py`` for the like-for-like
regression), inference <= 1x the point estimate (``benchmarks/inference.py``).

Usage::

    .venv/bin/python benchmarks/evaluation.py --delivery /tmp/national --generate \\
        --out benchmarks/results/evaluation.md
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import machine, run  # noqa: E402

HERE = str(Path(__file__).resolve())
GB = 1e9


def _config():  # noqa: ANN202
    from schemas.config import EvaluationConfig

    return EvaluationConfig()


def _emit(**data: object) -> None:
    print(json.dumps(data))


# ----------------------------------------------------------------- child stages
def child_bare_read(delivery: str, db: str) -> None:
    """DuckDB alone: every file of the delivery into tables, nothing checked (the bare read of
    ``benchmarks/load.py``)."""
    from load import _bare_read

    out = _bare_read(Path(delivery), Path(db))
    _emit(seconds=out["seconds"], rows=int(out["rows"]))


def child_load(delivery: str, db: str) -> None:
    """The delivery and its correction loaded as a run loads them (one stream, ``load_deliveries``)."""
    from pipeline import db as _db
    from pipeline.load import load_deliveries
    from pipeline.pseudonym import DEMO_KEY

    config = _config()
    d = Path(delivery)
    deliveries = [(d / "kela", d / "avain")]
    if (d / "kela_correction").is_dir():
        deliveries.append((d / "kela_correction", None))
    t = time.perf_counter()
    with _db.connect(Path(db)) as con:
        _db.ensure_result_tables(con)
        first = load_deliveries(con, deliveries, key=DEMO_KEY, config=config, run_id="bench")[0]
    _emit(seconds=time.perf_counter() - t, rows=first.totals())


def child_validate(db: str, out: str) -> None:
    from pipeline import db as _db
    from pipeline.quality import run_quality_checks

    t = time.perf_counter()
    with _db.connect(Path(db)) as con:
        run_quality_checks(con, run_id="bench", docs_dir=Path(out) / "data_docs")
    _emit(seconds=time.perf_counter() - t)


def child_panels(db: str) -> None:
    from pipeline.evaluation import panel_stage

    t = time.perf_counter()
    counts = panel_stage(Path(db), _config())
    _emit(seconds=time.perf_counter() - t, counts=counts)


def child_estimate(db: str) -> None:
    from pipeline import db as _db
    from pipeline.evaluation import estimate_stage

    with _db.connect(Path(db)) as con:
        _db.start_run(con, run_id="bench", config_json=_config().model_dump_json(), inputs=[])
    t = time.perf_counter()
    estimate_stage(Path(db), _config(), run_id="bench")
    _emit(seconds=time.perf_counter() - t)


def child_report(db: str, out: str) -> None:
    from pipeline.evaluation import report_stage

    t = time.perf_counter()
    report_stage(Path(db), _config(), run_id="bench", out=Path(out))
    _emit(seconds=time.perf_counter() - t)


def child_run(delivery: str, db: str, out: str) -> None:
    """The whole evaluation in one process, as ``kokeilu run --no-orchestrate`` runs it."""
    from pipeline.evaluation import run_evaluation
    from pipeline.pseudonym import DEMO_KEY

    d = Path(delivery)
    t = time.perf_counter()
    summary = run_evaluation(kela=d / "kela", avain=d / "avain", db=Path(db), out=Path(out), config=_config(),
                             key=DEMO_KEY, corrections=d / "kela_correction" if (d / "kela_correction").is_dir() else None)
    _emit(seconds=time.perf_counter() - t, stages=summary.seconds)


def child_twfe_kokeilu(db: str) -> None:
    from pipeline import db as _db
    from pipeline.estimates import monthly_cells
    from pipeline.did.twfe import twfe_cells

    t = time.perf_counter()
    with _db.connect(Path(db), read_only=True) as con:
        res = twfe_cells(monthly_cells(con, "received"), cv3=False)
    _emit(seconds=time.perf_counter() - t, estimate=res.estimate, std_error=res.std_error)


def child_twfe_pyfixest(db: str) -> None:
    import pyfixest as pf

    from pipeline import db as _db

    t = time.perf_counter()
    with _db.connect(Path(db), read_only=True) as con:
        frame = con.sql("select person_key, month, kuntanumero, in_pilot, received::double as received "
                        "from panel.person_month").df()
    fit = pf.feols("received ~ in_pilot | person_key + month", data=frame, vcov={"CRV1": "kuntanumero"})
    _emit(seconds=time.perf_counter() - t, estimate=float(fit.coef()["in_pilot"]),
          std_error=float(fit.se()["in_pilot"]))


def warm_cache(delivery: Path) -> None:
    """Read every file of the delivery once, untimed: the bare read (timed first) and the run then both
    read from the page cache, not one from disk and the other from memory."""
    for path in sorted(delivery.rglob("*")):
        if path.is_file():
            with path.open("rb") as fh:
                while fh.read(1 << 24):
                    pass


# ----------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delivery", type=Path, required=True, help="national delivery (kela/, avain/, ...)")
    parser.add_argument("--generate", action="store_true", help="generate the national delivery first if missing")
    parser.add_argument("--seed", type=int, default=20180101)
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "evaluation.md")
    parser.add_argument("--pairs", type=int, default=3,
                        help="times the bare read and the whole run are timed, one after the other (default 3): "
                             "the target takes the median of their ratios, the machine being shared")
    args = parser.parse_args()

    timings: dict[str, tuple[float, int, dict]] = {}
    if args.generate and not (args.delivery / "truth.json").exists():
        kokeilu = str(Path(sys.executable).parent / "kokeilu")
        m = run([kokeilu, "generate", "--out", str(args.delivery), "--scale", "national", "--seed", str(args.seed)])
        timings["generate national (not part of a run)"] = (m.seconds, m.peak_rss_bytes, {})
    warm_cache(args.delivery)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="kokeilu-bench-", dir=args.work))
    db, bare, out = work / "evaluation.duckdb", work / "bare.duckdb", work / "outputs"
    whole_db, whole_out = work / "whole.duckdb", work / "whole-outputs"
    try:
        stages = [
            ("bare DuckDB read_csv (baseline)", f"{HERE}:child_bare_read", [str(args.delivery), str(bare)]),
            ("load", f"{HERE}:child_load", [str(args.delivery), str(db)]),
            ("validate (expectation suites, Data Docs)", f"{HERE}:child_validate", [str(db), str(out)]),
            ("panels", f"{HERE}:child_panels", [str(db)]),
            ("estimate + inference (every outcome, subgroup, robustness)", f"{HERE}:child_estimate", [str(db)]),
            ("report", f"{HERE}:child_report", [str(db), str(out)]),
            ("TWFE + CRV1, kokeilu (headline, from the panel)", f"{HERE}:child_twfe_kokeilu", [str(db)]),
            ("TWFE + CRV1, pyfixest (same regression)", f"{HERE}:child_twfe_pyfixest", [str(db)]),
            (WHOLE, f"{HERE}:child_run", [str(args.delivery), str(whole_db), str(whole_out)]),
        ]
        for name, target, targs in stages:
            print(f"running: {name}", file=sys.stderr, flush=True)
            m = run(target, *targs)
            timings[name] = (m.seconds, m.peak_rss_bytes, m.last_json())
        pairs = [(timings[stages[0][0]][0], timings[WHOLE][0])]
        for i in range(1, args.pairs):
            print(f"running: bare read and whole run, pair {i + 1} of {args.pairs}", file=sys.stderr, flush=True)
            for path in (bare, whole_db):
                path.unlink(missing_ok=True)
            shutil.rmtree(whole_out, ignore_errors=True)
            b = run(stages[0][1], *stages[0][2])
            w = run(stages[-1][1], *stages[-1][2])
            pairs.append((b.seconds, w.seconds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(timings, pairs, args), encoding="utf-8")
    print(args.out.read_text(encoding="utf-8"))


WHOLE = "whole run in one process (`kokeilu run --no-orchestrate`)"


def render(timings: dict[str, tuple[float, int, dict]], pairs: list[tuple[float, float]],
           args: argparse.Namespace) -> str:
    run_stages = ["load", "validate (expectation suites, Data Docs)", "panels",
                  "estimate + inference (every outcome, subgroup, robustness)", "report"]
    bare = timings["bare DuckDB read_csv (baseline)"]
    staged = sum(timings[s][0] for s in run_stages)
    whole = timings[WHOLE]
    peak = max(whole[1], *(timings[s][1] for s in run_stages))
    inside = ", ".join(f"{k} {v:.1f} s" for k, v in whole[2].get("stages", {}).items())
    ours = timings["TWFE + CRV1, kokeilu (headline, from the panel)"]
    theirs = timings["TWFE + CRV1, pyfixest (same regression)"]
    info = machine()
    def work(v: tuple[float, int, dict]) -> str:
        return f"{v[2]['seconds']:.1f}" if "seconds" in v[2] else ""

    lines = [
        "| stage | process wall (s) | of which the work itself (s) | peak RSS (GB) |", "|---|---:|---:|---:|",
        *[f"| {k} | {v[0]:.1f} | {work(v)} | {v[1] / GB:.2f} |" for k, v in timings.items()],
        f"| sum of the stages above, each in its own process (load .. report) | {staged:.1f} | | |",
        "",
        "Process wall time includes starting Python and importing the stack; the stages in separate processes",
        "pay that five times, the whole run once. The target compares the whole run in one process (process wall).",
        "",
        f"- rows read by the bare read: {bare[2].get('rows'):,}",
        f"- whole run / bare read: **{statistics.median(w / b for b, w in pairs):.2f}x** (target <= 3x), the median "
        f"over {len(pairs)} pairs timed one after the other: "
        + ", ".join(f"{w:.1f} s / {b:.1f} s = {w / b:.2f}x" for b, w in pairs),
        f"- inside the first whole run: {inside}",
        f"- stages in separate processes / bare read: {staged / bare[0]:.2f}x",
        f"- peak RSS of any stage: **{peak / GB:.2f} GB** (target <= 4 GB)",
        f"- TWFE kokeilu / pyfixest: **{ours[0] / theirs[0]:.3f}x** (target <= 1.0x); coefficient "
        f"{ours[2]['estimate']:.10f} vs {theirs[2]['estimate']:.10f}, CRV1 s.e. {ours[2]['std_error']:.8f} vs "
        f"{theirs[2]['std_error']:.8f}",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['ram']}, Python {info['python']}",
        f"- command: `.venv/bin/python benchmarks/evaluation.py --delivery {args.delivery}"
        f"{' --generate' if args.generate else ''} --pairs {args.pairs}`",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
