"""TWFE with CRV1 by municipality: kokeilu against pyfixest and fereg on the same person x month panel.

A balanced panel is synthesised in numpy: persons nested in the 31
municipalities of ``schemas/reference/municipalities.csv`` in proportion to
their 2016 population, 60 months 2017-01 ... 2021-12, the real pilot schedule
(five municipalities 2018-01 ... 2019-12, Tornio 2018-01 ... 2018-12), and an
outcome with person effects, a month pattern, persistent municipality-month
shocks and a pilot effect. It is written once to Parquet; every tool then runs
in a child process of its own (its peak RSS is its own) and is timed from
reading that file to the coefficient and its clustered standard error:

* kokeilu, cells: DuckDB ``GROUP BY`` of the Parquet file to municipality x
  month sums, ``cells_from_sums`` and ``twfe_cells`` (what
  ``pipeline.estimates`` does on ``panel.person_month``);
* kokeilu, ``twfe``: the public dispatch on the long polars frame, which checks
  balance and nesting and aggregates itself;
* pyfixest ``feols("y ~ in_pilot | person_key + month", vcov={"CRV1": "kuntanumero"})``;
* fereg ``feols`` with the same formula and vcov.

The coefficients must agree to 1e-8 (relative) or the script fails. Targets:
kokeilu's time at most that of pyfixest and of fereg.

Usage::

    python benchmarks/twfe.py --rows 10_000_000 --out benchmarks/results/twfe.md
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve()

from _measure import machine, run  # noqa: E402

MUNICIPALITIES = ROOT / "schemas" / "reference" / "municipalities.csv"
FIRST_MONTH = date(2017, 1, 1)
N_MONTHS = 60
EFFECT = -0.04
COEF_RTOL = 1e-8
WARMUP_ROWS = 36_000


# ------------------------------------------------------------------ the panel
@dataclass(frozen=True)
class Municipality:
    """One row of the reference file: code, name, 2016 population and pilot months (None for comparison)."""

    code: int
    name: str
    population: int
    start: date | None
    end: date | None


def read_municipalities(path: Path = MUNICIPALITIES) -> list[Municipality]:
    """The 31 municipalities and the pilot schedule of the reference file."""

    def month(text: str) -> date | None:
        return date(int(text[:4]), int(text[5:7]), 1) if text else None

    with path.open(encoding="utf-8") as fh:
        return [Municipality(int(r["kuntanumero"]), r["nimi_fi"], int(r["vaesto_2016"]),
                             month(r["pilotti_alku"]), month(r["pilotti_loppu"])) for r in csv.DictReader(fh)]


def allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` persons in proportion to ``weights`` (largest remainder; every share at least 1)."""
    raw = total * weights / weights.sum()
    out = np.maximum(np.floor(raw).astype(np.int64), 1)
    left = total - int(out.sum())
    if left > 0:
        out[np.argsort(-(raw - np.floor(raw)))[:left]] += 1
    return out


def month_starts(n_months: int = N_MONTHS) -> np.ndarray:
    """First days of the panel's months as ``datetime64[D]``."""
    first = np.datetime64(FIRST_MONTH.isoformat()[:7], "M")
    return (first + np.arange(n_months)).astype("datetime64[D]")


@dataclass(frozen=True)
class Panel:
    """Columns of a balanced person x month panel, sorted by person then month."""

    person_key: np.ndarray
    month: np.ndarray
    kuntanumero: np.ndarray
    in_pilot: np.ndarray
    outcomes: dict[str, np.ndarray]
    persons_per_municipality: np.ndarray

    @property
    def rows(self) -> int:
        """Number of person-months."""
        return len(self.person_key)


def synth_panel(rows: int, seed: int, *, binary: bool = False) -> Panel:
    """A balanced panel of about ``rows`` person-months (rounded to whole persons).

    The outcome is ``y`` (continuous: person effect + month pattern +
    municipality-month AR(1) shock + pilot effect + noise) or, with ``binary``,
    ``received`` (a 0/1 draw with that probability, the shape of the headline
    outcome of ``panel.person_month``).
    """
    munis = read_municipalities()
    rng = np.random.default_rng(seed)
    T = N_MONTHS
    n_persons = max(rows // T, len(munis))
    sizes = allocate(n_persons, np.array([m.population for m in munis], dtype=float))
    months = month_starts(T)
    G = len(munis)
    D = np.zeros((G, T), dtype=np.int8)
    for g, m in enumerate(munis):
        if m.start is not None and m.end is not None:
            D[g] = (months >= np.datetime64(m.start, "D")) & (months <= np.datetime64(m.end, "D"))
    level = rng.uniform(0.45, 0.75, size=G)
    t = np.arange(T)
    season = -0.002 * t + 0.03 * np.cos(2 * np.pi * t / 12)
    shock = np.zeros((G, T))
    shock[:, 0] = rng.normal(0, 0.02, size=G)
    for s in range(1, T):
        shock[:, s] = 0.7 * shock[:, s - 1] + np.sqrt(1 - 0.7**2) * rng.normal(0, 0.02, size=G)
    cell = level[:, None] + season[None, :] + shock + EFFECT * D  # (G, T) mean of the municipality's persons
    g_of_person = np.repeat(np.arange(G), sizes)
    person_effect = rng.normal(0, 0.15, size=n_persons)
    mean = (cell[g_of_person] + person_effect[:, None]).ravel()  # person-major, month-minor
    if binary:
        y = (rng.random(mean.size) < np.clip(mean, 0, 1)).astype(np.int8)
        outcomes = {"received": y}
    else:
        mean += rng.normal(0, 0.3, size=mean.size)
        outcomes = {"y": mean}
    codes = np.array([m.code for m in munis], dtype=np.int32)
    return Panel(
        person_key=np.repeat(np.arange(1, n_persons + 1, dtype=np.int64), T),
        month=np.tile(months, n_persons),
        kuntanumero=np.repeat(codes[g_of_person], T),
        in_pilot=D[g_of_person].ravel(),
        outcomes=outcomes,
        persons_per_municipality=sizes,
    )


def write_parquet(panel: Panel, path: Path) -> None:
    """The panel as one Parquet file (columns person_key, month, kuntanumero, in_pilot and the outcomes)."""
    import polars as pl

    frame = pl.DataFrame({"person_key": panel.person_key, "month": panel.month.astype("datetime64[D]"),
                          "kuntanumero": panel.kuntanumero, "in_pilot": panel.in_pilot, **panel.outcomes})
    frame.write_parquet(path)


# ------------------------------------------------------------ the children
def _child(fit: Callable[[str], dict[str, float]], parquet: str, warmup: str) -> None:
    """Time ``fit`` on a small panel first (first-call costs: JIT, thread pools), then on ``parquet``; print JSON."""
    started = time.perf_counter()
    first = fit(warmup)
    warmed, cpu = time.perf_counter(), time.process_time()
    out = fit(parquet)
    out.update(seconds=time.perf_counter() - warmed, cpu_seconds=time.process_time() - cpu,
               first_call_seconds=warmed - started, first_call_rows=first["rows"])
    print(json.dumps(out))


def _fit_kokeilu_cells(parquet: str) -> dict[str, float]:
    import duckdb

    from pipeline.db import query_frame
    from pipeline.did.panel import cells_from_sums
    from pipeline.did.twfe import twfe_cells

    start = time.perf_counter()
    con = duckdb.connect()
    con.execute("set enable_progress_bar = false").fetchall()
    frame = query_frame(con, """
        select kuntanumero, month, sum(y)::double as s, count(*)::bigint as n, max(in_pilot)::double as d
        from read_parquet(?) group by kuntanumero, month order by kuntanumero, month""", [parquet])
    grouped = time.perf_counter()
    cells = cells_from_sums(frame, cluster="kuntanumero", time="month", sum_col="s", n_col="n", treatment="d")
    res = twfe_cells(cells)
    return {"estimate": res.estimate, "se": res.std_error, "rows": res.n_obs, "ssc": res.ssc,
            "group_by_seconds": grouped - start, "after_group_by_seconds": time.perf_counter() - grouped}


def _fit_kokeilu_twfe(parquet: str) -> dict[str, float]:
    import polars as pl

    from pipeline.did.twfe import twfe

    start = time.perf_counter()
    frame = pl.read_parquet(parquet)
    read = time.perf_counter()
    res = twfe(frame, unit="person_key", time="month", outcome="y", treatment="in_pilot", cluster="kuntanumero")
    if res.path != "aggregated":
        raise RuntimeError(f"twfe took the {res.path} path: {res.fallback_reason}")
    return {"estimate": res.estimate, "se": res.std_error, "rows": res.n_obs, "read_seconds": read - start}


def _fit_pyfixest(parquet: str) -> dict[str, float]:
    import pandas as pd
    import pyfixest as pf

    start = time.perf_counter()
    frame = pd.read_parquet(parquet)
    read = time.perf_counter()
    fit = pf.feols("y ~ in_pilot | person_key + month", data=frame, vcov={"CRV1": "kuntanumero"})
    return {"estimate": float(fit.coef()["in_pilot"]), "se": float(fit.se()["in_pilot"]), "rows": len(frame),
            "read_seconds": read - start}


def _fit_fereg(parquet: str) -> dict[str, float]:
    import fereg
    import polars as pl

    start = time.perf_counter()
    frame = pl.read_parquet(parquet)
    read = time.perf_counter()
    fit = fereg.feols("y ~ in_pilot | person_key + month", data=frame, vcov={"CRV1": "kuntanumero"})
    return {"estimate": float(fit.coef()["in_pilot"]), "se": float(fit.se()["in_pilot"]), "rows": frame.height,
            "read_seconds": read - start}


def child_kokeilu_cells(parquet: str, warmup: str) -> None:
    """DuckDB GROUP BY of the Parquet file to cells, ``cells_from_sums`` and ``twfe_cells``."""
    _child(_fit_kokeilu_cells, parquet, warmup)


def child_kokeilu_twfe(parquet: str, warmup: str) -> None:
    """``pipeline.did.twfe.twfe`` (auto path) on the long polars frame read from the Parquet file."""
    _child(_fit_kokeilu_twfe, parquet, warmup)


def child_pyfixest(parquet: str, warmup: str) -> None:
    """pyfixest ``feols`` with person and month effects, CRV1 by municipality, on a pandas frame."""
    _child(_fit_pyfixest, parquet, warmup)


def child_fereg(parquet: str, warmup: str) -> None:
    """fereg ``feols`` with person and month effects, CRV1 by municipality, on a polars frame (it reads both)."""
    _child(_fit_fereg, parquet, warmup)


TOOLS = {
    "kokeilu (DuckDB GROUP BY + twfe_cells)": "child_kokeilu_cells",
    "kokeilu (twfe on the polars panel)": "child_kokeilu_twfe",
    "pyfixest feols": "child_pyfixest",
    "fereg feols": "child_fereg",
}


# ------------------------------------------------------------------ report
def versions() -> dict[str, str]:
    """Installed versions of the packages measured."""
    from importlib.metadata import version

    return {p: version(p) for p in ("numpy", "polars", "duckdb", "pandas", "pyfixest", "fereg", "linearmodels")}


def markdown(rows: int, persons: int, warm_rows: int, results: dict[str, dict[str, float]], seed: int) -> str:
    """The results as a markdown fragment."""
    mach = machine()
    kc = results["kokeilu (DuckDB GROUP BY + twfe_cells)"]
    kt = results["kokeilu (twfe on the polars panel)"]
    pf_, fe = results["pyfixest feols"], results["fereg feols"]
    lines = [
        f"### TWFE + CRV1 by municipality: {rows:,} rows ({persons:,} persons x {N_MONTHS} months, 31 municipalities)",
        "",
        "Time: from reading the same Parquet file to the coefficient and its clustered standard error, "
        "each tool in a child process of its own, one timed run each (seed "
        f"{seed}). Before it, each child fits a {warm_rows:,}-row panel once so that imports, JIT "
        "compilation and thread start-up are paid outside the timed run (shown apart as *first call*). "
        "CPU: user + system seconds of the timed run, all threads (the machine is shared: wall time "
        "includes waiting for a core). Peak RSS: the child's `ru_maxrss` (imports and the first call included).",
        "",
        "| tool | time (s) | CPU (s) | peak RSS (GB) | coefficient | SE (CRV1) | first call (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['peak_rss_bytes'] / 1e9:.2f} | "
                     f"{r['estimate']:.10f} | {r['se']:.10f} | {r['first_call_seconds']:.2f} |")
    lines += [
        "",
        "| ratio (target <= 1x) | cells path, time | `twfe` dispatch, time | cells path, CPU | `twfe` dispatch, CPU |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for peer, p in (("pyfixest", pf_), ("fereg", fe)):
        lines.append(f"| kokeilu / {peer} | {kc['seconds'] / p['seconds']:.3f}x | {kt['seconds'] / p['seconds']:.3f}x | "
                     f"{kc['cpu_seconds'] / p['cpu_seconds']:.3f}x | {kt['cpu_seconds'] / p['cpu_seconds']:.3f}x |")
    lines += [
        "",
        f"Coefficients agree to {max(_rel(r['estimate'], kc['estimate']) for r in results.values()):.1e} (relative; "
        f"asserted <= {COEF_RTOL:g}). Standard errors relative to pyfixest: "
        + ", ".join(f"{name} {_rel(r['se'], pf_['se']):.1e}" for name, r in results.items() if r is not pf_) + ".",
        "",
        "Small-sample convention: pyfixest 0.60's default `ssc()` (`k_adj=True, k_fixef=\"nonnested\", "
        "G_adj=True, G_df=\"min\"`) scales CRV1 by G/(G-1) x (N-1)/(N-K) with K = 1 + T: the person "
        "effects are nested in the municipality clusters and not counted, the T month levels are "
        f"counted (here c = {kc['ssc']:.8f}). kokeilu applies the same factor (`small_sample_factor` with "
        "`count_params`), fereg has the same default `ssc`; all report t(G-1) inference.",
        "",
        f"kokeilu cells path split: DuckDB GROUP BY {kc['group_by_seconds']:.2f} s, everything after it "
        f"(cells, TWFE, CRV1, CV3 jackknife) {kc['after_group_by_seconds'] * 1e3:.1f} ms. "
        f"`twfe` dispatch: Parquet read {kt['read_seconds']:.2f} s, checks + aggregation + fit "
        f"{kt['seconds'] - kt['read_seconds']:.2f} s. Reads for the peers: pyfixest (pandas) "
        f"{pf_['read_seconds']:.2f} s, fereg (polars) {fe['read_seconds']:.2f} s.",
        "",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['ram']} RAM, Python {mach['python']}, "
        f"{mach['os']}, load average {mach['load']} (1/5/15 min) when written. Packages: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
        "",
    ]
    return "\n".join(lines)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def main() -> None:
    """Synthesise the panel, time every tool in its own process, check agreement, write the markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="person-months (rounded to whole persons)")
    parser.add_argument("--seed", type=int, default=20180101)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "twfe.md")
    args = parser.parse_args()
    panel = synth_panel(args.rows, args.seed)
    small = synth_panel(WARMUP_ROWS, args.seed + 1)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="twfe_bench_") as tmp:
        parquet, warmup = Path(tmp) / "panel.parquet", Path(tmp) / "warmup.parquet"
        write_parquet(panel, parquet)
        write_parquet(small, warmup)
        rows, persons = panel.rows, int(panel.persons_per_municipality.sum())
        del panel
        for name, fn in TOOLS.items():
            m = run(f"{HERE}:{fn}", str(parquet), str(warmup))
            results[name] = {**m.last_json(), "peak_rss_bytes": m.peak_rss_bytes, "wall_seconds": m.seconds}
            print(f"{name}: {results[name]['seconds']:.2f} s, {m.peak_rss_bytes / 1e9:.2f} GB, "
                  f"beta {results[name]['estimate']:.12f}, se {results[name]['se']:.12f}", file=sys.stderr)
    ref = results["kokeilu (DuckDB GROUP BY + twfe_cells)"]["estimate"]
    for name, r in results.items():
        if _rel(r["estimate"], ref) > COEF_RTOL:
            sys.exit(f"coefficients disagree: {name} {r['estimate']!r} vs kokeilu {ref!r}")
    text = markdown(rows, persons, small.rows, results, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
