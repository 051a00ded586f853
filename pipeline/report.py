"""The HTML report of one evaluation run.

:func:`build_report` reads the results of a run from the DuckDB results
database (read-only) and writes one self-contained ``index.html``: tables of
the difference-in-differences estimates with every p-value computed, event
study and trend plots as inline PNG images, a rough cost view and the data
validation summary. Any results table may be missing or empty; its section
then says so instead of failing.

Disclosure control is applied again here, whatever the database holds: an
estimate resting on fewer persons than the threshold, or flagged
``suppressed``, shows no numbers, and no person count below the threshold is
printed.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import jinja2

from pipeline import db as _db
from pipeline.errors import InputError

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"
DEFAULT_MIN_CELL_PERSONS = 5
PILOT_START = date(2018, 1, 1)
PILOT_END = date(2019, 12, 31)
PILOT_MONTHS = 24
OUTCOME_ORDER = (
    "received", "amount_eur", "reduced_basic_amount", "social_work_notification", "long_term_receipt",
    "avain_situation", "avain_goal_achieved",
)
DIMENSION_ORDER = ("municipality", "age_band", "sex", "kotitaloustyyppi")
TREND_OUTCOMES = ("received", "amount_eur", "reduced_basic_amount", "social_work_notification")
DASH = "–"

Row = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    """What the report needs from the evaluation configuration."""

    min_cell_persons: int = DEFAULT_MIN_CELL_PERSONS
    pilot_cost_eur: float | None = None

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        if config is None:
            return cls()
        disclosure = getattr(config, "disclosure", None)
        threshold = getattr(disclosure, "min_cell_persons", DEFAULT_MIN_CELL_PERSONS)
        cost = getattr(config, "pilot_cost_eur", None)
        return cls(min_cell_persons=int(threshold), pilot_cost_eur=None if cost is None else float(cost))


@dataclass
class Plot:
    """One inline figure with its caption."""

    title: str
    png_base64: str
    note: str | None = None


@dataclass
class ReportData:
    """Everything the template renders."""

    run: Row | None
    threshold: int
    headline: list[Row] = field(default_factory=list)
    inference: list[Row] | None = None
    placebo_size: list[Row] | None = None
    event_studies: list[Plot] = field(default_factory=list)
    trends: list[Plot] = field(default_factory=list)
    subgroups: dict[str, list[Row]] = field(default_factory=dict)
    cost: list[Row] = field(default_factory=list)
    pilot_cost_eur: str | None = None
    validation: Row | None = None


# --- formatting -----------------------------------------------------------

def fmt_effect(x: float | None) -> str:
    """Four significant digits, never in scientific notation."""
    if x is None or math.isnan(x):
        return DASH
    if x == 0 or math.isinf(x):
        return str(x) if x else "0"
    digits = max(0, 3 - math.floor(math.log10(abs(x))))
    if digits > 8:
        return f"{x:.3e}"
    return f"{x:,.{digits}f}".replace(",", "\u202f")


def fmt_p(p: float | None) -> str:
    """Three decimals, or ``<0.001``."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return DASH
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_ci(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return DASH
    return f"[{fmt_effect(low)}, {fmt_effect(high)}]"


def fmt_count(n: int | None, threshold: int) -> str:
    """A person or row count, shown as ``< threshold`` when it is small but not zero."""
    if n is None:
        return DASH
    if 0 < n < threshold:
        return f"< {threshold}"
    return f"{int(n):,}".replace(",", "\u202f")


def fmt_clusters(treated: int | None, total: int | None) -> str:
    return f"{DASH if treated is None else treated} / {DASH if total is None else total}"


def fmt_eur(x: float | None) -> str:
    if x is None or math.isnan(x):
        return DASH
    return f"{x:,.0f} €".replace(",", "\u202f")


def fmt_time(t: Any) -> str:
    if t is None:
        return DASH
    return t.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if hasattr(t, "strftime") else str(t)


# --- reading --------------------------------------------------------------

def query(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> list[Row] | None:
    """Rows as dicts, or None when a table or column the query needs does not exist."""
    try:
        cur = con.execute(sql, list(params))
    except (duckdb.CatalogException, duckdb.BinderException):
        return None
    columns = [d[0] for d in cur.description]
    return [dict(zip(columns, values, strict=True)) for values in cur.fetchall()]


def select_run(con: duckdb.DuckDBPyConnection, run_id: str | None) -> Row | None:
    """The requested run, else the latest completed run, else the latest run."""
    if run_id is not None:
        rows = query(con, "select * from meta.runs where run_id = ?", [run_id])
        if not rows:
            raise InputError(f"run {run_id} not found in meta.runs")
        return rows[0]
    rows = query(
        con,
        "select * from meta.runs order by (status = 'completed') desc, started_at desc, run_id desc limit 1",
    )
    return rows[0] if rows else None


def n_input_files(inputs: Any) -> int | None:
    if inputs is None:
        return None
    try:
        parsed = json.loads(inputs) if isinstance(inputs, str) else inputs
    except json.JSONDecodeError:
        return None
    return len(parsed) if isinstance(parsed, list) else None


def run_metadata(run: Row | None) -> Row | None:
    if run is None:
        return None
    return {
        "run_id": run.get("run_id"),
        "started_at": fmt_time(run.get("started_at")),
        "finished_at": fmt_time(run.get("finished_at")),
        "status": run.get("status"),
        "code_version": run.get("code_version"),
        "n_inputs": n_input_files(run.get("inputs")),
        "message": run.get("message"),
    }


def results(con: duckdb.DuckDBPyConnection, table: str, run_id: str | None) -> list[Row] | None:
    """All rows of one results table for the run (None when the table is missing)."""
    if run_id is None:
        return None
    return query(con, f"select * from results.{table} where run_id = ?", [run_id])  # noqa: S608


# --- ordering and disclosure ---------------------------------------------

def outcome_key(outcome: str) -> tuple[int, str]:
    base = next((i for i, o in enumerate(OUTCOME_ORDER) if outcome == o or outcome.startswith(o + "_")), None)
    return (len(OUTCOME_ORDER) if base is None else base, outcome)


def estimator_key(estimator: str) -> tuple[int, str]:
    return (0 if estimator == "twfe" else 1, estimator)


def dimension_key(dimension: str) -> tuple[int, str]:
    order = DIMENSION_ORDER.index(dimension) if dimension in DIMENSION_ORDER else len(DIMENSION_ORDER)
    return (order, dimension)


def row_key(row: Row) -> tuple[Any, ...]:
    return (outcome_key(row["outcome"]), estimator_key(row["estimator"]))


def is_suppressed(row: Row, threshold: int) -> bool:
    n = row.get("n_persons")
    return bool(row.get("suppressed")) or (n is not None and n < threshold)


def estimate_cells(row: Row, threshold: int) -> Row:
    """The display cells of one did_estimates row, numbers withheld when suppressed."""
    cells: Row = {
        "outcome": row["outcome"],
        "estimator": row["estimator"],
        "subgroup": row["subgroup"],
        "level": row["subgroup"].split("=", 1)[-1],
        "clusters": fmt_clusters(row.get("n_treated_clusters"), row.get("n_clusters")),
        "suppressed": is_suppressed(row, threshold),
    }
    if cells["suppressed"]:
        cells["suppressed_text"] = f"suppressed (< {threshold} persons)"
        return cells
    cells.update(
        estimate=fmt_effect(row.get("estimate")),
        ci=fmt_ci(row.get("ci_low"), row.get("ci_high")),
        p=fmt_p(row.get("p_value")),
        p_wild=fmt_p(row.get("p_value_wild_bootstrap")),
        ci_wild=fmt_ci(row.get("ci_low_wild_bootstrap"), row.get("ci_high_wild_bootstrap")),
        p_ri=fmt_p(row.get("p_value_randomization")),
        se_cv3=fmt_effect(row.get("std_error_cv3")),
        persons=fmt_count(row.get("n_persons"), threshold),
    )
    return cells


def headline_rows(estimates: Iterable[Row], threshold: int) -> list[Row]:
    rows = sorted((r for r in estimates if r["subgroup"] == "all"), key=row_key)
    return [estimate_cells(r, threshold) for r in rows]


def subgroup_tables(estimates: Iterable[Row], threshold: int) -> dict[str, list[Row]]:
    """Subgroup estimates per dimension (municipality, age_band, ...)."""
    tables: dict[str, list[Row]] = defaultdict(list)
    rows = [r for r in estimates if r["subgroup"] != "all"]
    for r in sorted(rows, key=lambda r: (r["subgroup"].split("=", 1)[0], row_key(r), r["subgroup"])):
        tables[r["subgroup"].split("=", 1)[0]].append(estimate_cells(r, threshold))
    return dict(sorted(tables.items(), key=lambda item: dimension_key(item[0])))


def suppressed_keys(estimates: Iterable[Row], threshold: int) -> set[tuple[str, str, str]]:
    return {(r["outcome"], r["estimator"], r["subgroup"]) for r in estimates if is_suppressed(r, threshold)}


def inference_rows(rows: list[Row] | None, hidden: set[tuple[str, str, str]], threshold: int) -> list[Row] | None:
    """Every p-value and interval by method; those of suppressed estimates withheld."""
    if not rows:
        return None
    out = []
    for r in sorted(rows, key=lambda r: (r["subgroup"] != "all", r["subgroup"], row_key(r), r["method"])):
        withheld = (r["outcome"], r["estimator"], r["subgroup"]) in hidden
        out.append({
            "outcome": r["outcome"], "estimator": r["estimator"], "subgroup": r["subgroup"],
            "method": r["method"], "suppressed": withheld,
            "suppressed_text": f"suppressed (< {threshold} persons)",
            "p": fmt_p(r.get("p_value")), "ci": fmt_ci(r.get("ci_low"), r.get("ci_high")),
            "exact": DASH if r.get("exact") is None else ("exact" if r["exact"] else "approximate"),
            "draws": fmt_count(r.get("draws"), 0), "assumes": r.get("assumes") or "",
        })
    return out


def placebo_rows(rows: list[Row] | None) -> list[Row] | None:
    if not rows:
        return None
    return [
        {"outcome": r["outcome"], "method": r["method"], "n_placebos": fmt_count(r.get("n_placebos"), 0),
         "rejection_rate": DASH if r.get("rejection_rate") is None else f"{r['rejection_rate']:.3f}"}
        for r in sorted(rows, key=lambda r: (outcome_key(r["outcome"]), r["method"]))
    ]


def cost_rows(estimates: Iterable[Row], threshold: int) -> list[Row]:
    """Rough euro totals: effect per cohort member-month x cohort size x pilot months."""
    out = []
    for r in sorted((r for r in estimates if r["outcome"] == "amount_eur" and r["subgroup"] == "all"), key=row_key):
        if is_suppressed(r, threshold) or r.get("estimate") is None or r.get("n_persons") is None:
            continue
        scale = r["n_persons"] * PILOT_MONTHS
        out.append({
            "estimator": r["estimator"],
            "estimate": fmt_effect(r["estimate"]),
            "persons": fmt_count(r["n_persons"], threshold),
            "months": PILOT_MONTHS,
            "total": fmt_eur(r["estimate"] * scale),
            "total_ci": (f"[{fmt_eur(r['ci_low'] * scale)}, {fmt_eur(r['ci_high'] * scale)}]"
                         if r.get("ci_low") is not None and r.get("ci_high") is not None else DASH),
        })
    return out


def validation_summary(rows: list[Row] | None, threshold: int) -> Row | None:
    """Checks passed and failed per source, and the failed checks."""
    if not rows:
        return None
    counts: dict[str, Row] = defaultdict(lambda: {"checks": 0, "passed": 0, "failed": 0})
    for r in rows:
        c = counts[r["source"]]
        c["checks"] += 1
        c["passed" if r["passed"] else "failed"] += 1
    failed = [
        {"source": r["source"], "check_name": r["check_name"], "target": r["target"],
         "observed": fmt_count(r.get("observed"), threshold),
         "unexpected": fmt_count(r.get("unexpected"), threshold), "detail": r.get("detail") or ""}
        for r in sorted(rows, key=lambda r: (r["source"], r["check_name"], r["target"]))
        if not r["passed"]
    ]
    return {"by_source": dict(sorted(counts.items())), "failed": failed}


# --- plots ----------------------------------------------------------------

def new_figure(width: float = 6.4, height: float = 3.4) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_base64_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def event_study_plot(rows: list[Row]) -> str:
    rows = sorted(rows, key=lambda r: r["event_time"])
    t = [r["event_time"] for r in rows]
    fig = new_figure()
    ax = fig.add_subplot()
    low = [math.nan if r["ci_low"] is None else r["ci_low"] for r in rows]
    high = [math.nan if r["ci_high"] is None else r["ci_high"] for r in rows]
    ax.fill_between(t, low, high, alpha=0.25, color="tab:blue", linewidth=0, label="95% CI")
    ax.plot(t, [math.nan if r["estimate"] is None else r["estimate"] for r in rows],
            marker="o", markersize=3, color="tab:blue", label="estimate")
    ax.axvline(-0.5, color="grey", linestyle="--", linewidth=1)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("months relative to pilot start")
    ax.set_ylabel("effect")
    ax.legend(loc="best", fontsize="small")
    return to_base64_png(fig)


def pretrend_note(test: Row | None) -> str:
    if test is None:
        return "Pre-trend test: not available."
    stat = DASH if test.get("statistic") is None else f"{test['statistic']:.3f}"
    df = f" (df {test['df']})" if test.get("df") else ""
    return f"Joint test that all leads are zero: F = {stat}{df}, p = {fmt_p(test.get('p_value'))}."


def event_study_plots(rows: list[Row] | None, tests: list[Row] | None) -> list[Plot]:
    if not rows:
        return []
    grouped: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for r in rows:
        grouped[(r["outcome"], r["estimator"])].append(r)
    test_by_key = {(t["outcome"], t["estimator"]): t for t in tests or []}
    return [
        Plot(f"{outcome} — {estimator}", event_study_plot(grouped[(outcome, estimator)]),
             pretrend_note(test_by_key.get((outcome, estimator))))
        for outcome, estimator in sorted(grouped, key=lambda k: (outcome_key(k[0]), estimator_key(k[1])))
    ]


def trend_data(con: duckdb.DuckDBPyConnection, outcome: str) -> list[Row] | None:
    """Person-weighted monthly mean of pilot and comparison municipalities, non-suppressed cells only."""
    return query(
        con,
        f"""
        select month, treated, sum({outcome} * persons) / sum(persons) as mean
        from panel.municipality_month
        where not coalesce(suppressed, false) and {outcome} is not null and persons > 0
        group by month, treated
        order by month
        """,  # noqa: S608
    )


def trend_plot(outcome: str, rows: list[Row]) -> str:
    import matplotlib.dates as mdates

    fig = new_figure()
    ax = fig.add_subplot()
    for treated, label, color in ((True, "pilot municipalities", "tab:orange"),
                                  (False, "comparison municipalities", "tab:blue")):
        series = [r for r in rows if bool(r["treated"]) is treated]
        ax.plot([r["month"] for r in series], [r["mean"] for r in series], label=label, color=color)
    ax.axvspan(PILOT_START, PILOT_END, color="grey", alpha=0.15, zorder=0, label="pilot period 2018–2019")
    ax.xaxis.set_major_locator(mdates.YearLocator())
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    ax.set_ylabel(f"mean {outcome}")
    ax.legend(loc="best", fontsize="small")
    return to_base64_png(fig)


def trend_plots(con: duckdb.DuckDBPyConnection) -> list[Plot]:
    plots = []
    for outcome in TREND_OUTCOMES:
        rows = trend_data(con, outcome)
        if rows:
            plots.append(Plot(outcome, trend_plot(outcome, rows)))
    return plots


# --- assembly -------------------------------------------------------------

def collect(con: duckdb.DuckDBPyConnection, run_id: str | None, settings: Settings) -> ReportData:
    threshold = settings.min_cell_persons
    run = select_run(con, run_id)
    rid = None if run is None else run["run_id"]
    estimates = results(con, "did_estimates", rid) or []
    hidden = suppressed_keys(estimates, threshold)
    return ReportData(
        run=run_metadata(run),
        threshold=threshold,
        headline=headline_rows(estimates, threshold),
        inference=inference_rows(results(con, "inference", rid), hidden, threshold),
        placebo_size=placebo_rows(results(con, "placebo_size", rid)),
        event_studies=event_study_plots(results(con, "event_study", rid), results(con, "pretrend_tests", rid)),
        trends=trend_plots(con),
        subgroups=subgroup_tables(estimates, threshold),
        cost=cost_rows(estimates, threshold),
        pilot_cost_eur=None if settings.pilot_cost_eur is None else fmt_eur(settings.pilot_cost_eur),
        validation=validation_summary(
            None if rid is None else query(con, "select * from meta.validation_results where run_id = ?", [rid]),
            threshold,
        ),
    )


def render(data: ReportData) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE_NAME).render(
        data=data, pilot_start=PILOT_START, pilot_end=PILOT_END, pilot_months=PILOT_MONTHS,
    )


def build_report(db: Path, out_dir: Path, *, run_id: str | None = None, config: Any = None) -> Path:
    """Write ``out_dir/index.html`` for run ``run_id`` (default: the latest completed run); return its path."""
    settings = Settings.from_config(config)
    with _db.connect(Path(db), read_only=True) as con:
        data = collect(con, run_id, settings)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    path.write_text(render(data), encoding="utf-8")
    return path
