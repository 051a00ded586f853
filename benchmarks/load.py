"""Loading speed: ``load_delivery`` against DuckDB's bare ``read_csv`` of the same Kela-style files.

The bare read is the floor any loader of these files stands on: DuckDB parses
every file of the delivery into tables -- the Kela-style CSVs (and the
correction's) with the contract's column types (``delim=';'``,
``decimal_separator=','``, columns matched by name, rows it cannot parse
skipped), the Parquet months, the AVAIN-style CSVs -- and does nothing else. ``load_delivery``
does the whole job: file and row rules, quarantine, pseudonymisation, manifest,
staging, for the Kela-style and AVAIN-style files of the delivery.

Each measurement runs in a child process of its own, so that its peak resident
memory (``ru_maxrss``) and CPU time are its own. CPU time is printed beside wall
time because it is less sensitive to other work on the machine. Targets: load
time at most twice the bare read, peak memory at most 4 GB.

Usage::

    python benchmarks/load.py --delivery /path/to/delivery --db /tmp/bench.duckdb
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TIME_RATIO_TARGET = 2.0
PEAK_RSS_TARGET_GB = 4.0


def _duckdb_type(kind: str) -> str:
    """The DuckDB type of a contract column kind (the types of the staging table)."""
    return {"int": "TINYINT", "decimal": "DECIMAL(12, 2)"}.get(kind, "VARCHAR")


def _bare_read(delivery: Path, db: Path) -> dict[str, float]:
    """DuckDB reading every file the run reads into tables, and nothing else.

    The Kela-style CSVs (the delivery's and the correction's) with the contract's
    types into one table, the Parquet months into another, the AVAIN-style CSVs
    into a third (their columns as DuckDB's sniffer types them).
    """
    import duckdb

    from schemas.columns import KELA_COLUMNS

    kela = sorted(str(p) for d in ("kela", "kela_correction") for p in (delivery / d).glob("toimeentulotuki_*.csv"))
    parquet = sorted(str(p) for p in (delivery / "kela").glob("toimeentulotuki_*.parquet"))
    avain = sorted(str(p) for p in (delivery / "avain").glob("avain_*.csv"))
    types = {c.name: _duckdb_type(c.kind) for c in KELA_COLUMNS}
    db.unlink(missing_ok=True)
    start = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute("set enable_progress_bar = false")
    con.execute("create table kela as select * from read_csv(?, delim = ';', decimal_separator = ',', header = true, "
                "union_by_name = true, types = ?, ignore_errors = true)", [kela, types])
    rows = con.execute("select count(*) from kela").fetchall()[0][0]
    if parquet:
        con.execute("create table kela_parquet as select * from read_parquet(?, union_by_name = true)", [parquet])
        rows += con.execute("select count(*) from kela_parquet").fetchall()[0][0]
    if avain:
        con.execute("create table avain as select * from read_csv(?, delim = ';', header = true, "
                    "union_by_name = true, ignore_errors = true)", [avain])
        rows += con.execute("select count(*) from avain").fetchall()[0][0]
    con.close()
    return {"seconds": time.perf_counter() - start, "rows": float(rows)}


def _load(delivery: Path, db: Path) -> dict[str, float]:
    """The delivery and its correction loaded into a fresh database, as a run loads them (``load_deliveries``)."""
    from pipeline import db as _db
    from pipeline.load import load_deliveries
    from pipeline.pseudonym import DEMO_KEY
    from schemas.config import EvaluationConfig

    config = EvaluationConfig()
    db.unlink(missing_ok=True)
    avain = delivery / "avain"
    deliveries = [(delivery / "kela", avain if avain.is_dir() else None)]
    if (delivery / "kela_correction").is_dir():  # the bare read reads it too
        deliveries.append((delivery / "kela_correction", None))
    start = time.perf_counter()
    with _db.connect(db) as con:
        reports = load_deliveries(con, deliveries, key=DEMO_KEY, config=config, run_id="benchmark")
    totals = [report.totals() for report in reports]
    return {"seconds": time.perf_counter() - start, "rows": float(sum(t["rows_in"] for t in totals)),
            "rows_quarantined": float(sum(t["rows_quarantined"] for t in totals))}


PHASES = {"bare": _bare_read, "load": _load}


def _child(phase: str, delivery: Path, db: Path) -> None:
    """Run one phase and print its timing and this process's peak RSS as JSON."""
    result = PHASES[phase](delivery, db)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_gb"] = usage.ru_maxrss * 1024 / 1e9
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result))


def _run(phase: str, delivery: Path, db: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--phase", phase, "--delivery", str(delivery), "--db", str(db)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{phase} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Time both phases and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delivery", type=Path, required=True, help="delivery directory with kela/ (and avain/)")
    parser.add_argument("--db", type=Path, required=True, help="database file for the load (overwritten)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (args.delivery / "kela").is_dir():
        parser.error(f"{args.delivery} has no kela/ directory")
    if args.phase:
        _child(args.phase, args.delivery, args.db)
        return
    bare = _run("bare", args.delivery, args.db.with_name(args.db.stem + "_bare" + args.db.suffix))
    load = _run("load", args.delivery, args.db)
    ratio = load["seconds"] / bare["seconds"]
    print(f"delivery: {args.delivery} ({load['rows']:,.0f} rows in, {load['rows_quarantined']:,.0f} quarantined; "
          f"bare read kept {bare['rows']:,.0f} rows)\n")
    print("| step | time (s) | CPU time (s) | peak RSS (GB) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| DuckDB bare read (every file: Kela CSV and Parquet, correction, AVAIN) | {bare['seconds']:.2f} | {bare['cpu_seconds']:.2f} "
          f"| {bare['peak_rss_gb']:.2f} |")
    print(f"| load_deliveries (the delivery and its correction, one stream) | {load['seconds']:.2f} | {load['cpu_seconds']:.2f} "
          f"| {load['peak_rss_gb']:.2f} |")
    print(f"| ratio load / bare (target <= {TIME_RATIO_TARGET:g}) | {ratio:.2f} "
          f"| {load['cpu_seconds'] / bare['cpu_seconds']:.2f} | |")
    peak_ok = load["peak_rss_gb"] <= PEAK_RSS_TARGET_GB
    print(f"\ntime target {'met' if ratio <= TIME_RATIO_TARGET else 'missed'}; "
          f"memory target (<= {PEAK_RSS_TARGET_GB:g} GB) {'met' if peak_ok else 'missed'}")


if __name__ == "__main__":
    main()
