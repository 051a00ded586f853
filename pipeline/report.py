"""The HTML report of one evaluation run.

:func:`build_report` reads the results of a run from the DuckDB results
database (read-only) and writes one self-contained ``index.html``: tables of
the difference-in-differences estimates with every p-value computed, event
study and trend plots as inline SVG images, the robustness checks
(synthetic DiD, leave one municipality out, HonestDiD sensitivity, the
anticipation rerun), the cost view and the data validation summary. Any
results table may be missing or empty; its section then says so instead of
failing.

Disclosure control is applied again here, whatever the database holds: an
estimate resting on fewer persons than the threshold, or flagged
``suppressed``, shows no numbers, and no person count below the threshold is
printed.
"""

from __future__ import annotations

import base64
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import duckdb
import jinja2

from pipeline import db as _db
from pipeline.errors import InputError

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"
DEFAULT_MIN_CELL_PERSONS = 5
PILOT_START = date(2018, 1, 1)
PILOT_END = date(2019, 12, 31)
OUTCOME_ORDER = (
    "received", "amount_eur", "reduced_basic_amount", "social_work_notification", "long_term_receipt",
    "avain_situation", "avain_goal_achieved",
)
DIMENSION_ORDER = ("municipality", "age_band", "sex", "kotitaloustyyppi")
TREND_OUTCOMES = ("received", "amount_eur", "reduced_basic_amount", "social_work_notification")
ROBUST_ESTIMATORS = ("twfe", "clean_controls")
COMPARED_ESTIMATORS = ("twfe", "clean_controls", "sdid")
ESTIMATOR_LABELS = {"twfe": "TWFE", "clean_controls": "clean controls", "sdid": "synthetic DiD"}
ESTIMATOR_COLORS = {"twfe": "tab:blue", "clean_controls": "tab:orange"}
SIMULATION_DOC = "docs/inference_simulation.md"
"""The simulation page the report cites; its numbers and the advice come from the JSON it is rendered from."""


@dataclass(frozen=True)
class Simulation:
    """What the report quotes of the committed inference simulation (``docs/inference_simulation.json``)."""

    sentences: tuple[str, ...]
    replications: int
    dgps: tuple[str, ...]
    lead_test_f: tuple[float, float]
    lead_test_randomization: tuple[float, float]


def simulation(path: Path | None = None) -> Simulation | None:
    """The advice of :mod:`pipeline.simulation_advice` (its stated rule applied to the committed simulation)
    and the lead tests' sizes under the actual design (lowest and highest over the data-generating processes);
    None when the file is missing."""
    from pipeline.simulation_advice import SIMULATION_JSON, actual_rows, advice_from

    path = path or Path(__file__).resolve().parent.parent / SIMULATION_JSON
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))

    def span(method: str) -> tuple[float, float]:
        sizes = [r["size"] for r in actual_rows(data, "event_study", method)]
        return (min(sizes), max(sizes)) if sizes else (float("nan"), float("nan"))

    return Simulation(sentences=advice_from(data).sentences, replications=int(data["replications"]["actual"]),
                      dgps=tuple(d["name"] for d in data["dgps"]), lead_test_f=span("lead_test_f"),
                      lead_test_randomization=span("lead_test_randomization"))
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
    """One inline figure (an SVG data URI) with its caption."""

    title: str
    src: str
    note: str | None = None


@dataclass
class OutcomeRobustness:
    """The robustness checks of one outcome's headline estimate, ready to render."""

    outcome: str
    estimators: list[Row] = field(default_factory=list)
    leave_one_out: Plot | None = None
    leave_one_out_rows: list[Row] = field(default_factory=list)
    sensitivity: Plot | None = None
    sensitivity_rows: list[Row] = field(default_factory=list)
    sensitivity_centre: str | None = None
    breakdown: str | None = None
    anticipation: list[Row] = field(default_factory=list)
    anticipation_text: list[str] = field(default_factory=list)
    window: Row | None = None


@dataclass
class ReportData:
    """Everything the template renders."""

    run: Row | None
    threshold: int
    headline: list[Row] = field(default_factory=list)
    inference: list[Row] | None = None
    placebo_size: list[Row] | None = None
    pretrend: list[Row] = field(default_factory=list)
    event_studies: list[Plot] = field(default_factory=list)
    trends: list[Plot] = field(default_factory=list)
    subgroups: dict[str, list[Row]] = field(default_factory=dict)
    robustness: list[OutcomeRobustness] = field(default_factory=list)
    cost: list[Row] = field(default_factory=list)
    cost_basis: Row | None = None
    pilot_cost_eur: str | None = None
    validation: Row | None = None
    balance: list[Row] | None = None


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


def fmt_p_eq(p: float | None) -> str:
    """``p = 0.123`` or ``p < 0.001``, for running text."""
    text = fmt_p(p)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


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


def fmt_eur_ci(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return DASH
    return f"[{fmt_eur(low)}, {fmt_eur(high)}]"


def fmt_share(x: float | None) -> str:
    """A relative change as a signed percentage with one decimal."""
    if x is None or math.isnan(x):
        return DASH
    return f"{x * 100:+.1f} %"


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
        "validity_note": row.get("validity_note"),
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


def balance_rows(rows: list[Row] | None) -> list[Row] | None:
    """The balance table as shown: shares as percentages, means and standardized differences to 3 decimals,
    withheld rows without numbers (the decision is the results table's)."""
    if not rows:
        return None

    def value(r: Row, key: str) -> str:
        x = r.get(key)
        if x is None:
            return DASH
        return f"{100 * x:.1f}%" if r["statistic"] == "share" else f"{x:.2f}"

    def diff(x: float | None) -> str:
        return DASH if x is None else f"{x:+.3f}"

    return [{"covariate": r["covariate"], "level": r["level"], "suppressed": bool(r.get("suppressed")),
             "pilot": value(r, "pilot_value"), "comparison": value(r, "comparison_value"),
             "weighted": value(r, "comparison_value_weighted"), "std_diff": diff(r.get("std_diff")),
             "std_diff_weighted": diff(r.get("std_diff_weighted")),
             "large": r.get("std_diff") is not None and abs(r["std_diff"]) > 0.1}
            for r in rows]


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


def cost_rows(rows: list[Row] | None, hidden: set[tuple[str, str, str]], threshold: int,
              pilot_cost: float | None) -> list[Row]:
    """The cost view of amount_eur in results.cost, one row per estimator; rows of suppressed estimates withheld.

    A negative change is a saving. With ``pilot_cost`` the saving net of the
    pilot's cost is added (saving minus cost, interval shifted alike).
    """
    out = []
    for r in sorted((r for r in rows or [] if r["outcome"] == "amount_eur"), key=row_key):
        withheld = (bool(r.get("suppressed")) or (r["outcome"], r["estimator"], "all") in hidden
                    or (r.get("treated_persons") is not None and r["treated_persons"] < threshold))
        cells: Row = {"outcome": r["outcome"], "estimator": r["estimator"],
                      "label": ESTIMATOR_LABELS.get(r["estimator"], r["estimator"]), "suppressed": withheld,
                      "suppressed_text": f"suppressed (< {threshold} persons)"}
        if not withheld:
            total, low, high = r.get("effect_total"), r.get("effect_total_ci_low"), r.get("effect_total_ci_high")
            per_month = r.get("effect_per_person_month")
            cells.update(
                per_month=DASH if per_month is None else f"{fmt_effect(per_month)} €",
                per_member=_with_ci(r.get("effect_per_member"), r.get("effect_per_member_ci_low"),
                                    r.get("effect_per_member_ci_high")),
                total=_with_ci(total, low, high),
                observed=fmt_eur(r.get("observed_total")), counterfactual=fmt_eur(r.get("counterfactual_total")),
                change=fmt_share(r.get("change_share")),
            )
            if pilot_cost is not None:
                cells["pilot_cost"] = fmt_eur(pilot_cost)
                cells["net"] = (DASH if total is None else
                                _with_ci(-total - pilot_cost, None if high is None else -high - pilot_cost,
                                         None if low is None else -low - pilot_cost))
        out.append(cells)
    return out


def _with_ci(x: float | None, low: float | None, high: float | None) -> str:
    """Euros with their interval in one cell."""
    return fmt_eur(x) if low is None or high is None else f"{fmt_eur(x)} {fmt_eur_ci(low, high)}"


def cost_basis(rows: list[Row] | None, threshold: int) -> Row | None:
    """Treated cohort members and pilot person-months behind the cost view (the same for every estimator)."""
    first = next((r for r in rows or [] if r["outcome"] == "amount_eur"), None)
    if first is None:
        return None
    return {"persons": fmt_count(first.get("treated_persons"), threshold),
            "person_months": fmt_count(first.get("pilot_person_months"), threshold)}


def pretrend_rows(tests: list[Row] | None) -> list[Row]:
    """The lead tests, randomization p-value first, the F-test beside it."""
    out = []
    for t in sorted(tests or [], key=lambda t: (outcome_key(t["outcome"]), estimator_key(t["estimator"]))):
        out.append({
            "outcome": t["outcome"], "estimator": t["estimator"],
            "p_ri": fmt_p(t.get("p_value_randomization")), "draws": fmt_count(t.get("draws"), 0),
            "p_f": fmt_p(t.get("p_value")),
            "f": DASH if t.get("statistic") is None else f"{t['statistic']:.3f}", "df": t.get("df") or DASH,
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


# --- SVG figures ----------------------------------------------------------
#
# Figures are small SVG documents written here: band, line, interval and marker
# plots on linear axes need nothing more, and a plotting library's import and
# layout passes cost seconds per report. Each figure is embedded as a base64
# data URI in an <img>, so its tick labels never mix with the page's text.

COLORS = {"tab:blue": "#1f77b4", "tab:orange": "#ff7f0e", "grey": "#808080", "black": "#000000"}
FONT_PX = 11
CHAR_PX = 0.6 * FONT_PX
"""Approximate width of one character of the figure font, for margins and legends."""
LEGEND_ROW_PX = 18


def _finite(v: Any) -> bool:
    return v is not None and math.isfinite(float(v))


def data_limits(values: Iterable[Any], pad: float = 0.05) -> tuple[float, float]:
    """The range of the finite values, widened by ``pad`` of it on each side (never empty)."""
    finite = [float(v) for v in values if _finite(v)]
    if not finite:
        return (-1.0, 1.0)
    lo, hi = min(finite), max(finite)
    margin = (hi - lo) * pad if hi > lo else (abs(lo) * pad or 0.5)
    return (lo - margin, hi + margin)


def nice_ticks(lo: float, hi: float, target: int = 8) -> list[tuple[float, str]]:
    """About ``target`` round tick values within [lo, hi], each with its label."""
    raw = (hi - lo) / max(target - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * magnitude >= raw * (1 - 1e-9))
    decimals = next(d for d in range(15) if abs(round(step, d) - step) <= step * 1e-6)
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [(k * step, f"{k * step:.{decimals}f}".replace("-", "\u2212")) for k in range(first, last + 1)]


def _runs(points: Sequence[tuple[Any, ...]]) -> list[list[tuple[float, ...]]]:
    """Stretches of two or more consecutive points with finite coordinates (a gap breaks a line or band)."""
    runs: list[list[tuple[float, ...]]] = [[]]
    for p in points:
        if all(_finite(v) for v in p):
            runs[-1].append(tuple(float(v) for v in p))
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if len(r) > 1]


def _text(x: float, y: float, text: str, anchor: str = "middle", **attrs: Any) -> str:
    """A text element; lines split at newlines, centred vertically on ``y``."""
    lines = text.split("\n")
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    first = y - (len(lines) - 1) * FONT_PX * 0.6
    spans = "".join(f'<tspan x="{x:.1f}" y="{first + i * FONT_PX * 1.2:.1f}" dy="0.35em">{escape(line)}</tspan>'
                    for i, line in enumerate(lines))
    return f'<text text-anchor="{anchor}"{extra}>{spans}</text>'


class Panel:
    """One plot area of an SVG figure: linear scales from data to pixels and the marks drawn in it."""

    def __init__(self, box: tuple[float, float, float, float], xlim: tuple[float, float],
                 ylim: tuple[float, float], name: str = "panel") -> None:
        self.left, self.top, self.width, self.height = box
        self.xlim, self.ylim, self.name = xlim, ylim, name
        self.marks: list[str] = []

    def x(self, v: float) -> float:
        return self.left + (v - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * self.width

    def y(self, v: float) -> float:
        return self.top + (self.ylim[1] - v) / (self.ylim[1] - self.ylim[0]) * self.height

    def line(self, xs: Sequence[Any], ys: Sequence[Any], color: str, width: float = 1.5,
             dashed: bool = False, opacity: float = 1.0, cap: str = "round") -> None:
        """A polyline through the points, broken where a value is missing."""
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        for run in _runs(list(zip(xs, ys, strict=True))):
            pts = " ".join(f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in run)
            self.marks.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[color]}" stroke-width="{width}" '
                              f'stroke-opacity="{opacity}" stroke-linecap="{cap}"{dash}/>')

    def band(self, xs: Sequence[Any], lows: Sequence[Any], highs: Sequence[Any], color: str,
             opacity: float = 0.25) -> None:
        """A filled band between two series, broken where a bound is missing."""
        for run in _runs(list(zip(xs, lows, highs, strict=True))):
            outline = [(x, lo) for x, lo, _ in run] + [(x, hi) for x, _, hi in reversed(run)]
            pts = " ".join(f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in outline)
            self.marks.append(f'<polygon points="{pts}" fill="{COLORS[color]}" fill-opacity="{opacity}"/>')

    def hline(self, v: float, color: str, width: float = 1.0, dashed: bool = False) -> None:
        self.line(self.xlim, (v, v), color, width, dashed, cap="butt")

    def vline(self, v: float, color: str, width: float = 1.0, dashed: bool = False) -> None:
        self.line((v, v), self.ylim, color, width, dashed, cap="butt")

    def xspan(self, x0: float, x1: float, color: str, opacity: float) -> None:
        left, right = self.x(max(x0, self.xlim[0])), self.x(min(x1, self.xlim[1]))
        if right > left:
            self.marks.append(f'<rect x="{left:.1f}" y="{self.top:.1f}" width="{right - left:.1f}" '
                              f'height="{self.height:.1f}" fill="{COLORS[color]}" fill-opacity="{opacity}"/>')

    def marker(self, x: float, y: float, color: str, shape: str = "o", size: float = 3.0) -> None:
        """A circle (``o``) or a triangle pointing up (``^``) or down (``v``)."""
        px, py = self.x(x), self.y(y)
        if shape == "o":
            self.marks.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{size}" fill="{COLORS[color]}"/>')
            return
        tip = -size if shape == "^" else size
        self.marks.append(f'<polygon points="{px:.1f},{py + tip:.1f} {px - size:.1f},{py - tip:.1f} '
                          f'{px + size:.1f},{py - tip:.1f}" fill="{COLORS[color]}"/>')

    def note(self, text: str) -> None:
        self.marks.append(_text(self.left + self.width / 2, self.top + self.height / 2, text, fill=COLORS["grey"]))

    def svg(self, xticks: Sequence[tuple[float, str]], yticks: Sequence[tuple[float, str]],
            xlabel: str, ylabel: str | None = None) -> str:
        """The panel's marks clipped to its frame, with its ticks and axis labels."""
        bottom, right = self.top + self.height, self.left + self.width
        parts = [f'<clipPath id="{self.name}"><rect x="{self.left:.1f}" y="{self.top:.1f}" '
                 f'width="{self.width:.1f}" height="{self.height:.1f}"/></clipPath>',
                 f'<g clip-path="url(#{self.name})">{"".join(self.marks)}</g>',
                 f'<rect x="{self.left:.1f}" y="{self.top:.1f}" width="{self.width:.1f}" height="{self.height:.1f}" '
                 f'fill="none" stroke="#000" stroke-width="0.8"/>']
        for v, label in xticks:
            if self.xlim[0] <= v <= self.xlim[1]:
                px = self.x(v)
                parts.append(f'<line x1="{px:.1f}" y1="{bottom:.1f}" x2="{px:.1f}" y2="{bottom + 4:.1f}" '
                             'stroke="#000"/>')
                parts.append(_text(px, bottom + 12, label))
        for v, label in yticks:
            if self.ylim[0] <= v <= self.ylim[1]:
                py = self.y(v)
                parts.append(f'<line x1="{self.left - 4:.1f}" y1="{py:.1f}" x2="{self.left:.1f}" y2="{py:.1f}" '
                             'stroke="#000"/>')
                parts.append(_text(self.left - 7, py, label, anchor="end"))
        if xlabel:
            parts.append(_text((self.left + right) / 2, bottom + 30, xlabel))
        if ylabel:
            x = max(10.0, self.left - 7 - CHAR_PX * max(len(label) for _, label in yticks or [(0, "")]) - 12)
            parts.append(_text(x, self.top + self.height / 2, ylabel,
                               transform=f"rotate(-90 {x:.1f} {self.top + self.height / 2:.1f})"))
        return "".join(parts)


def _swatch(kind: str, color: str, x: float, y: float) -> str:
    """The legend symbol of one entry, 24 px wide, starting at ``x`` and centred on ``y``."""
    c = COLORS[color]
    if kind == "patch":
        return f'<rect x="{x:.1f}" y="{y - 5:.1f}" width="24" height="10" fill="{c}" fill-opacity="0.25"/>'
    if kind == "point":
        return f'<circle cx="{x + 12:.1f}" cy="{y:.1f}" r="3" fill="{c}"/>'
    width = {"bar": 5, "line": 1.5, "dashed": 1, "line_point": 1.5}[kind]
    style = ' stroke-dasharray="5,3"' if kind == "dashed" else ' stroke-opacity="0.6"' if kind == "bar" else ""
    line = (f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 24:.1f}" y2="{y:.1f}" stroke="{c}" '
            f'stroke-width="{width}"{style}/>')
    return line + (f'<circle cx="{x + 12:.1f}" cy="{y:.1f}" r="3" fill="{c}"/>' if kind == "line_point" else "")


def legend(entries: Sequence[tuple[str, str, str]], centre: float, top: float, columns: int) -> str:
    """Legend entries ``(label, kind, color)`` in rows of ``columns``, centred on ``centre``."""
    if not entries:
        return ""
    width = legend_width(entries, 1)
    left = centre - width * min(columns, len(entries)) / 2
    parts = []
    for i, (label, kind, color) in enumerate(entries):
        x, y = left + (i % columns) * width, top + (i // columns + 0.5) * LEGEND_ROW_PX
        parts.append(_swatch(kind, color, x, y) + _text(x + 30, y, label, anchor="start"))
    return "".join(parts)


def legend_width(entries: Sequence[tuple[str, str, str]], columns: int) -> float:
    """Pixels a legend of ``columns`` columns needs (each as wide as the longest label)."""
    return (34 + CHAR_PX * max((len(label) for label, _, _ in entries), default=0)) * min(columns, len(entries))


def legend_height(n_entries: int, columns: int) -> float:
    return math.ceil(n_entries / columns) * LEGEND_ROW_PX + 6 if n_entries else 0.0


def svg_data_uri(width: float, height: float, body: str) -> str:
    """A complete SVG document as a base64 data URI for an ``<img>``."""
    doc = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans, Arial, sans-serif" '
           f'font-size="{FONT_PX}"><rect width="100%" height="100%" fill="#fff"/>{body}</svg>')
    return "data:image/svg+xml;base64," + base64.b64encode(doc.encode("utf-8")).decode("ascii")


# --- plots ----------------------------------------------------------------

def _value(v: Any) -> float:
    return math.nan if v is None else float(v)


def event_study_plot(rows: list[Row]) -> str:
    """Estimates by month relative to the pilot start with their 95% band."""
    rows = sorted(rows, key=lambda r: r["event_time"])
    t = [float(r["event_time"]) for r in rows]
    est, low, high = ([_value(r[k]) for r in rows] for k in ("estimate", "ci_low", "ci_high"))
    entries = [("95% CI", "patch", "tab:blue"), ("estimate", "line_point", "tab:blue")]
    width, height = 640.0, 340.0
    box = (72.0, 12.0, width - 72.0 - 16.0, height - 12.0 - 44.0 - legend_height(len(entries), 2))
    panel = Panel(box, data_limits([*t, -0.5]), data_limits([*est, *low, *high, 0.0]))
    panel.band(t, low, high, "tab:blue")
    panel.vline(-0.5, "grey", dashed=True)
    panel.hline(0.0, "black", 0.8)
    panel.line(t, est, "tab:blue")
    for x, y in zip(t, est, strict=True):
        if _finite(y):
            panel.marker(x, y, "tab:blue", size=2.5)
    body = panel.svg(nice_ticks(*panel.xlim), nice_ticks(*panel.ylim), "months relative to pilot start", "effect")
    return svg_data_uri(width, height, body + legend(entries, width / 2, box[1] + box[3] + 44.0, 2))


def pretrend_note(test: Row | None) -> str:
    """The lead test in one caption: the randomization p-value first, the over-rejecting F-test after it."""
    if test is None:
        return "Pre-trend test: not available."
    stat = DASH if test.get("statistic") is None else f"{test['statistic']:.3f}"
    df = f", df {test['df']}" if test.get("df") else ""
    f_part = f"F-test {fmt_p_eq(test.get('p_value'))} (F = {stat}{df}; over-rejects with 6 treated municipalities)"
    if test.get("p_value_randomization") is None:
        return f"Joint test that all leads are zero: randomization p not computed; {f_part}."
    draws = f" over {test['draws']} reassignments" if test.get("draws") else ""
    return (f"Joint test that all leads are zero: randomization {fmt_p_eq(test['p_value_randomization'])}"
            f"{draws}; {f_part}.")


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
    """Monthly means of pilot and comparison municipalities over the shaded pilot period."""
    day = {id(r): float(r["month"].toordinal()) for r in rows}
    series = [("pilot municipalities", "tab:orange", [r for r in rows if bool(r["treated"])]),
              ("comparison municipalities", "tab:blue", [r for r in rows if not bool(r["treated"])])]
    entries = [(label, "line", color) for label, color, _ in series] + [("pilot period 2018–2019", "patch", "grey")]
    width, height = 640.0, 340.0
    box = (72.0, 12.0, width - 72.0 - 16.0, height - 12.0 - 30.0 - legend_height(len(entries), 3))
    panel = Panel(box, data_limits(day.values()), data_limits(r["mean"] for r in rows))
    panel.xspan(PILOT_START.toordinal(), PILOT_END.toordinal(), "grey", 0.15)
    for _, color, points in series:
        panel.line([day[id(r)] for r in points], [_value(r["mean"]) for r in points], color)
    first, last = (date.fromordinal(int(v)).year for v in panel.xlim)
    years = [(float(date(y, 1, 1).toordinal()), str(y)) for y in range(first, last + 1)]
    body = panel.svg(years, nice_ticks(*panel.ylim), "", f"mean {outcome}")
    return svg_data_uri(width, height, body + legend(entries, width / 2, box[1] + box[3] + 26.0, 3))


def trend_plots(con: duckdb.DuckDBPyConnection) -> list[Plot]:
    plots = []
    for outcome in TREND_OUTCOMES:
        rows = trend_data(con, outcome)
        if rows:
            plots.append(Plot(outcome, trend_plot(outcome, rows)))
    return plots


# --- robustness -----------------------------------------------------------

def _withheld(row: Row | None, threshold: int) -> bool:
    return row is not None and is_suppressed(row, threshold)


def _point(row: Row | None, threshold: int) -> str:
    """``estimate [low, high]`` of one row, or why there is none."""
    if row is None:
        return DASH
    if _withheld(row, threshold):
        return "suppressed"
    return f"{fmt_effect(row.get('estimate'))} {fmt_ci(row.get('ci_low'), row.get('ci_high'))}"


def _has_interval(row: Row | None) -> bool:
    return row is not None and row.get("ci_low") is not None and row.get("ci_high") is not None


def leave_one_out_rows(rows: list[Row], full: dict[str, Row], threshold: int) -> list[Row]:
    """One table row per pilot municipality left out, then the range over comparison municipalities."""
    treated: dict[str, dict[str, Row]] = defaultdict(dict)
    comparison: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r["analysis"] == "leave_one_out_treated":
            treated[r["variant"].split("=", 1)[-1]][r["estimator"]] = r
        elif r["analysis"] == "leave_one_out_comparison":
            comparison[r["estimator"]].append(r)
    out: list[Row] = [{"label": "none (all municipalities)",
                       "cells": {e: _point(full.get(e), threshold) for e in ROBUST_ESTIMATORS}}]
    out += [{"label": f"pilot municipality {code}",
             "cells": {e: _point(by_est.get(e), threshold) for e in ROBUST_ESTIMATORS}}
            for code, by_est in sorted(treated.items())]
    if comparison:
        out.append({"label": "each comparison municipality in turn (range of estimates)",
                    "cells": {e: _range_text(comparison.get(e, []), threshold) for e in ROBUST_ESTIMATORS}})
    return out


def _range_text(rows: list[Row], threshold: int) -> str:
    shown = [r["estimate"] for r in rows if not _withheld(r, threshold) and r.get("estimate") is not None]
    hidden = len(rows) - len(shown)
    if not shown:
        return "suppressed" if hidden else DASH
    text = f"{fmt_effect(min(shown))} … {fmt_effect(max(shown))} ({len(shown)} estimates)"
    return text + (f"; {hidden} suppressed" if hidden else "")


def leave_one_out_plot(outcome: str, rows: list[Row], full: dict[str, Row], threshold: int) -> str | None:
    """Forest plot: estimate and interval without each pilot municipality, range over comparison ones."""
    treated = sorted({r["variant"].split("=", 1)[-1] for r in rows if r["analysis"] == "leave_one_out_treated"})
    comparison = [r for r in rows if r["analysis"] == "leave_one_out_comparison"]
    if not treated and not comparison:
        return None
    shown = {r["variant"].split("=", 1)[-1] for r in rows if r["analysis"] == "leave_one_out_treated"
             and not _withheld(r, threshold) and r.get("estimate") is not None}
    labels = [f"without {code}" + ("" if code in shown else " (suppressed)") for code in treated]
    labels += ["comparison municipalities,\none left out at a time"] if comparison else []
    marks: list[tuple[str, Any]] = []  # what to draw, once the x-range is known
    entries: list[tuple[str, str, str]] = []
    for k, est in enumerate(ROBUST_ESTIMATORS):
        color, offset = ESTIMATOR_COLORS[est], 0.15 - 0.3 * k
        label = ESTIMATOR_LABELS[est]
        ref = full.get(est)
        if ref is not None and not _withheld(ref, threshold) and ref.get("estimate") is not None:
            marks.append(("ref", (ref["estimate"], color)))
            entries.append((f"{label}, all municipalities", "dashed", color))
        drawn = False
        for i, code in enumerate(treated):
            r = next((r for r in rows if r["analysis"] == "leave_one_out_treated" and r["estimator"] == est
                      and r["variant"].split("=", 1)[-1] == code), None)
            if r is None or _withheld(r, threshold) or r.get("estimate") is None:
                continue
            y = len(labels) - 1 - i + offset
            if _has_interval(r):
                marks.append(("interval", (r["ci_low"], r["ci_high"], y, color)))
            marks.append(("point", (r["estimate"], y, color)))
            drawn = True
        if drawn:
            entries.append((f"{label}, without one pilot municipality", "line_point", color))
        spread = [r["estimate"] for r in comparison if r["estimator"] == est
                  and not _withheld(r, threshold) and r.get("estimate") is not None]
        if spread:
            marks.append(("range", (min(spread), max(spread), offset, color)))
            entries.append((f"{label}, range without one comparison municipality", "bar", color))
    xs = [0.0] + [v for kind, m in marks for v in (m[:1] if kind in ("ref", "point") else m[:2])]
    left = 20.0 + CHAR_PX * max(len(line) for label in labels for line in label.split("\n"))
    width = max(720.0, legend_width(entries, 2) + 20.0)
    plot_height = 45.0 * len(labels) + 60.0
    height = 12.0 + plot_height + 44.0 + legend_height(len(entries), 2)
    panel = Panel((left, 12.0, width - left - 16.0, plot_height), data_limits(xs), (-0.6, len(labels) - 0.4))
    for kind, m in marks:
        if kind == "ref":
            panel.vline(m[0], m[1], dashed=True)
        elif kind == "interval":
            panel.line(m[:2], (m[2], m[2]), m[3], 1.2)
        elif kind == "point":
            panel.marker(m[0], m[1], m[2], size=3.0)
        else:
            panel.line(m[:2], (m[2], m[2]), m[3], 5.0, opacity=0.6, cap="butt")
    panel.vline(0.0, "black", 0.8)
    yticks = [(float(len(labels) - 1 - i), label) for i, label in enumerate(labels)]
    body = panel.svg(nice_ticks(*panel.xlim), yticks, f"effect on {outcome} (95% interval)")
    return svg_data_uri(width, height, body + legend(entries, width / 2, 12.0 + plot_height + 40.0, 2))


def sensitivity_rows(rows: list[Row], threshold: int) -> list[Row]:
    """The robust confidence sets by restriction and bound, numbers withheld when suppressed."""
    out = []
    names = {"honest_relative_magnitudes": ("relative magnitudes", "M̄"), "honest_smoothness": ("smoothness", "M")}
    for r in sorted((r for r in rows if r["analysis"] in names),
                    key=lambda r: (r["analysis"] != "honest_relative_magnitudes", r.get("parameter") or 0.0)):
        restriction, symbol = names[r["analysis"]]
        bound = DASH if r.get("parameter") is None else f"{r['parameter']:.4g}"
        out.append({"restriction": restriction, "bound": f"{symbol} = {bound}",
                    "suppressed": _withheld(r, threshold),
                    "ci": fmt_ci(r.get("ci_low"), r.get("ci_high")),
                    "excludes_zero": ("yes" if _has_interval(r) and (r["ci_low"] > 0 or r["ci_high"] < 0)
                                      else "no")})
    return out


def sensitivity_centre(rows: list[Row], threshold: int) -> str | None:
    """The event-study average effect the sensitivity sets are centred on (None when withheld or missing)."""
    r = next((r for r in rows if r["analysis"] in ("honest_relative_magnitudes", "honest_smoothness")), None)
    if r is None or _withheld(r, threshold) or r.get("estimate") is None:
        return None
    return fmt_effect(r["estimate"])


def sensitivity_plot(outcome: str, rows: list[Row], threshold: int) -> str | None:
    """Robust confidence sets against M̄ (relative magnitudes) and M (smoothness), side by side."""
    panels = [("honest_relative_magnitudes", "M̄ (relative magnitudes)"), ("honest_smoothness", "M (smoothness)")]
    series = {a: sorted((r for r in rows if r["analysis"] == a and r.get("parameter") is not None
                         and not _withheld(r, threshold) and _has_interval(r)), key=lambda r: r["parameter"])
              for a, _ in panels}
    if not any(series.values()):
        return None
    limits = _clip_limits([r for s in series.values() for r in s])
    plotted = [r for s in series.values() for r in s]
    ylim = limits if limits is not None else data_limits(
        [0.0, *(r["ci_low"] for r in plotted), *(r["ci_high"] for r in plotted),
         *(s[0]["estimate"] for s in series.values() if s and s[0].get("estimate") is not None)])
    width, height, left, gap = 800.0, 320.0, 72.0, 16.0
    panel_width = (width - left - 16.0 - gap) / 2
    body = []
    for k, (analysis, xlabel) in enumerate(panels):
        points = series[analysis]
        box = (left + k * (panel_width + gap), 12.0, panel_width, height - 12.0 - 44.0)
        panel = Panel(box, data_limits([r["parameter"] for r in points] or [0.0, 1.0]), ylim, name=analysis)
        for r in points:
            low, high = r["ci_low"], r["ci_high"]
            if limits is not None:
                low, high = max(low, limits[0]), min(high, limits[1])
                if r["ci_low"] < limits[0]:
                    panel.marker(r["parameter"], limits[0] + 0.02 * (limits[1] - limits[0]), "tab:blue", "v", 5.0)
                if r["ci_high"] > limits[1]:
                    panel.marker(r["parameter"], limits[1] - 0.02 * (limits[1] - limits[0]), "tab:blue", "^", 5.0)
            panel.line((r["parameter"], r["parameter"]), (low, high), "tab:blue", 2.0, cap="butt")
        if points and points[0].get("estimate") is not None:
            panel.hline(points[0]["estimate"], "tab:blue", dashed=True)
        panel.hline(0.0, "black", 0.8)
        if not points:
            panel.note("not available")
        yticks = nice_ticks(*ylim) if k == 0 else [(v, "") for v, _ in nice_ticks(*ylim)]
        body.append(panel.svg(nice_ticks(*panel.xlim), yticks, xlabel,
                              f"robust 95% set, {outcome}" if k == 0 else None))
    return svg_data_uri(width, height, "".join(body))


def _clip_limits(rows: list[Row]) -> tuple[float, float] | None:
    """Y-limits around the sets at bound 0 (and zero), so that much wider sets do not flatten them; None if all fit."""
    base = [r for r in rows if r["parameter"] == 0] or [min(rows, key=lambda r: r["ci_high"] - r["ci_low"])]
    low, high = min(0.0, *(r["ci_low"] for r in base)), max(0.0, *(r["ci_high"] for r in base))
    pad = 0.5 * (high - low) or 1.0
    limits = (low - pad, high + pad)
    if all(limits[0] <= r["ci_low"] and r["ci_high"] <= limits[1] for r in rows):
        return None
    return limits


def breakdown_text(row: Row | None, threshold: int) -> str | None:
    """The relative-magnitudes breakdown value in words."""
    if row is None:
        return None
    if _withheld(row, threshold):
        return f"Breakdown value: suppressed (< {threshold} persons)."
    value = row.get("estimate")
    if value is None:
        return ("No value of M̄ makes the robust interval include zero: the event-study leads are all zero, "
                "so the relative-magnitudes bound never widens the interval.")
    if value == 0:
        return ("Breakdown value M̄* = 0: the robust interval includes zero already when trends stay exactly as "
                "parallel after the pilot start as before it (M̄ = 0), so there is no significant effect whose "
                "robustness could be measured.")
    shown = f"{value:.3g}"
    verdict = ("post-pilot violations as large as the largest one seen before the pilot would not overturn it"
               if value >= 1 else
               "a violation smaller than the largest one seen before the pilot would already overturn it, "
               "so the conclusion is fragile")
    return (f"Breakdown value M̄* = {shown}: the effect stays significantly different from zero as long as the "
            f"month-to-month violation of parallel trends after the pilot start is at most {shown} times the largest "
            f"one seen before it; {verdict}.")


def anticipation_rows(rows: list[Row], full: dict[str, Row], threshold: int) -> tuple[list[Row], list[str]]:
    """Main estimate beside the anticipation rerun per estimator, and what the comparison says in words."""
    table, text = [], []
    for est in ROBUST_ESTIMATORS:
        rerun = next((r for r in rows if r["analysis"] == "anticipation" and r["estimator"] == est), None)
        if rerun is None:
            continue
        main = full.get(est)
        table.append({"estimator": ESTIMATOR_LABELS[est], "variant": rerun["variant"],
                      "main": _point(main, threshold), "rerun": _point(rerun, threshold),
                      "p": DASH if _withheld(rerun, threshold) else fmt_p(rerun.get("p_value"))})
        if main is None or _withheld(rerun, threshold) or _withheld(main, threshold) or not _has_interval(main):
            continue
        inside = main["ci_low"] <= rerun["estimate"] <= main["ci_high"]
        text.append(
            f"Counting {rerun['variant']} as pilot months moves the {ESTIMATOR_LABELS[est]} estimate from "
            f"{fmt_effect(main['estimate'])} to {fmt_effect(rerun['estimate'])}, "
            + ("a shift within the main estimate's 95% interval: the result is not sensitive to this start date."
               if inside else
               "outside the main estimate's 95% interval: the result depends on when the pilot is taken to start.")
        )
    return table, text


def window_row(rows: list[Row], threshold: int) -> Row | None:
    """The effect in the anticipation months alone, with a plain-language reading."""
    r = next((r for r in rows if r["analysis"] == "anticipation_window"), None)
    if r is None:
        return None
    if _withheld(r, threshold):
        return {"variant": r["variant"], "suppressed": True, "text": f"suppressed (< {threshold} persons)"}
    excludes = _has_interval(r) and (r["ci_low"] > 0 or r["ci_high"] < 0)
    reading = ("The interval excludes zero: outcomes there already moved before the official start, consistent "
               "with an early effect of the municipality's own project, or with a difference that has nothing to "
               "do with the pilot; the rerun above shows how much the headline depends on those months."
               if excludes else
               "The interval includes zero: no clear sign of an effect before the official start.")
    return {"variant": r["variant"], "suppressed": False, "estimate": fmt_effect(r.get("estimate")),
            "ci": fmt_ci(r.get("ci_low"), r.get("ci_high")), "p": fmt_p(r.get("p_value")),
            "treated": DASH if r.get("n_treated_clusters") is None else r["n_treated_clusters"], "text": reading}


def robustness_sections(estimates: list[Row], rows: list[Row] | None, threshold: int) -> list[OutcomeRobustness]:
    """Per outcome with robustness rows or a synthetic DiD estimate: every check of its headline."""
    by_outcome: dict[str, list[Row]] = defaultdict(list)
    for r in rows or []:
        by_outcome[r["outcome"]].append(r)
    full_by_outcome: dict[str, dict[str, Row]] = defaultdict(dict)
    for r in estimates:
        if r["subgroup"] == "all":
            full_by_outcome[r["outcome"]][r["estimator"]] = r
    outcomes = set(by_outcome) | {o for o, ests in full_by_outcome.items() if "sdid" in ests}
    sections = []
    for outcome in sorted(outcomes, key=outcome_key):
        checks, full = by_outcome.get(outcome, []), full_by_outcome.get(outcome, {})
        loo_svg = leave_one_out_plot(outcome, checks, full, threshold)
        honest_svg = sensitivity_plot(outcome, checks, threshold)
        table, text = anticipation_rows(checks, full, threshold)
        sections.append(OutcomeRobustness(
            outcome=outcome,
            estimators=[estimate_cells(full[e], threshold) | {"label": ESTIMATOR_LABELS[e]}
                        for e in COMPARED_ESTIMATORS if e in full],
            leave_one_out=None if loo_svg is None else Plot(f"{outcome}: leave one municipality out", loo_svg),
            leave_one_out_rows=(leave_one_out_rows(checks, full, threshold)
                                if any(r["analysis"].startswith("leave_one_out") for r in checks) else []),
            sensitivity=None if honest_svg is None else Plot(f"{outcome}: sensitivity to parallel trends",
                                                               honest_svg),
            sensitivity_rows=sensitivity_rows(checks, threshold),
            sensitivity_centre=sensitivity_centre(checks, threshold),
            breakdown=breakdown_text(next((r for r in checks if r["analysis"] == "honest_breakdown"), None),
                                     threshold),
            anticipation=table, anticipation_text=text, window=window_row(checks, threshold),
        ))
    return sections


# --- assembly -------------------------------------------------------------

def collect(con: duckdb.DuckDBPyConnection, run_id: str | None, settings: Settings) -> ReportData:
    threshold = settings.min_cell_persons
    run = select_run(con, run_id)
    rid = None if run is None else run["run_id"]
    estimates = results(con, "did_estimates", rid) or []
    hidden = suppressed_keys(estimates, threshold)
    tests = results(con, "pretrend_tests", rid)
    cost = results(con, "cost", rid)
    return ReportData(
        run=run_metadata(run),
        threshold=threshold,
        headline=headline_rows(estimates, threshold),
        inference=inference_rows(results(con, "inference", rid), hidden, threshold),
        placebo_size=placebo_rows(results(con, "placebo_size", rid)),
        pretrend=pretrend_rows(tests),
        event_studies=event_study_plots(results(con, "event_study", rid), tests),
        trends=trend_plots(con),
        subgroups=subgroup_tables(estimates, threshold),
        robustness=robustness_sections(estimates, results(con, "robustness", rid), threshold),
        cost=cost_rows(cost, hidden, threshold, settings.pilot_cost_eur),
        cost_basis=cost_basis(cost, threshold),
        pilot_cost_eur=None if settings.pilot_cost_eur is None else fmt_eur(settings.pilot_cost_eur),
        balance=balance_rows(results(con, "balance", rid)),
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
        data=data, pilot_start=PILOT_START, pilot_end=PILOT_END, sim=simulation(), simulation_doc=SIMULATION_DOC,
        labels=ESTIMATOR_LABELS,
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
