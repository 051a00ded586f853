"""One evaluation run, stage by stage, without an orchestrator.

The Prefect flow in ``flows/evaluate.py`` calls these same stage functions as
tasks; :func:`run_evaluation` runs them in sequence for a notebook or for
``kokeilu run --no-orchestrate``. Each stage commits its own transaction, so a
run killed at any point leaves the database at its last good state, and a run
that fails is recorded as ``failed`` in ``meta.runs`` with a one-line reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import db as _db
from pipeline.errors import KokeiluError, RunFailedError
from pipeline.imports import import_in_background
from schemas.config import EvaluationConfig


@dataclass
class EvaluationSummary:
    """What a finished run hands back: where things are and the headline table."""

    run_id: str
    db: Path
    report: Path | None
    headline: pl.DataFrame
    load: dict[str, Any] = field(default_factory=dict)
    panels: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def begin(db: Path, config: EvaluationConfig, *, kela: Path, avain: Path | None,
          corrections: Path | None = None) -> str:
    """Create the results tables if needed and record a new run as ``running``.

    The input files are listed now; their SHA-256 is filled in by :func:`load_stage`
    from the bytes the loader reads (hashing 1 GB twice costs seconds).
    """
    run_id = _db.new_run_id()
    inputs = _db.input_manifest(kela, avain, corrections, hashed=False)
    with _db.connect(db) as con:
        _db.start_run(con, run_id=run_id, config_json=config.model_dump_json(), inputs=inputs)
    return run_id


def load_stage(db: Path, config: EvaluationConfig, *, run_id: str, key: bytes, kela: Path,
               avain: Path | None, corrections: Path | None, out: Path) -> dict[str, Any]:
    """Load the delivery (and any corrections) into staging, then run the quality suites."""
    from pipeline.load import load_delivery

    # Great Expectations takes seconds to import: it does so while the delivery loads
    warm = import_in_background(("great_expectations", "pipeline.quality"), name="kokeilu-import-quality")
    with _db.connect(db) as con:
        report = load_delivery(con, kela_dir=kela, avain_dir=avain, key=key, config=config, run_id=run_id)
        summary = report.summary()
        files = list(report.files)
        if corrections is not None and corrections.is_dir():
            again = load_delivery(con, kela_dir=corrections, avain_dir=None, key=key, config=config, run_id=run_id)
            summary["corrections"] = again.summary()
            files += again.files
        known = {Path(f.path): f.sha256 for f in files if f.path and f.sha256}
        _db.record_inputs(con, run_id=run_id, inputs=_db.input_manifest(kela, avain, corrections, known=known))
        warm.join()
        try:
            from pipeline.quality import run_quality_checks
        except ImportError:  # pragma: no cover - quality suites not installed
            return summary
        summary["quality"] = run_quality_checks(con, run_id=run_id, docs_dir=out / "data_docs")
    return summary


def panel_stage(db: Path, config: EvaluationConfig) -> dict[str, Any]:
    """Rebuild every panel from staging under the configuration's schedule and cohort rules."""
    from pipeline.panels import build_panels

    with _db.connect(db) as con:
        report = build_panels(con, config)
    return report if isinstance(report, dict) else getattr(report, "__dict__", {})


def estimate_stage(db: Path, config: EvaluationConfig, *, run_id: str) -> None:
    """Estimate every effect with its inference and write them under ``run_id`` in one transaction."""
    from pipeline.analysis import estimate_all, write_results

    with _db.connect(db) as con:
        write_results(con, estimate_all(con, config), run_id)


def report_stage(db: Path, config: EvaluationConfig, *, run_id: str, out: Path) -> Path:
    """Write the HTML report of the run."""
    from pipeline.report import build_report

    return build_report(db, out / "report", run_id=run_id, config=config)


def end(db: Path, *, run_id: str, status: str, message: str | None = None) -> None:
    """Mark the run completed or failed."""
    with _db.connect(db) as con:
        _db.finish_run(con, run_id=run_id, status=status, message=message)


def headline(db: Path, *, run_id: str, config: EvaluationConfig) -> pl.DataFrame:
    """The headline rows of a run: every estimator on the headline outcomes, whole cohort."""
    with _db.connect(db, read_only=True) as con:
        return _db.query_frame(con,
            "select outcome, estimator, estimate, std_error, ci_low, ci_high, p_value, "
            "p_value_wild_bootstrap, p_value_randomization, n_persons, n_clusters, n_treated_clusters "
            "from results.did_estimates where run_id = ? and subgroup = 'all' "
            "order by outcome, estimator", [run_id],
        )


def run_evaluation(*, kela: Path, avain: Path | None, db: Path, out: Path, config: EvaluationConfig,
                   key: bytes, corrections: Path | None = None) -> EvaluationSummary:
    """The whole evaluation in sequence: load, panels, estimates with inference, report."""
    seconds: dict[str, float] = {}
    run_id = begin(db, config, kela=kela, avain=avain, corrections=corrections)
    try:
        t = _tick()
        load = load_stage(db, config, run_id=run_id, key=key, kela=kela, avain=avain,
                          corrections=corrections, out=out)
        seconds["load"] = _tock(t)
        t = _tick()
        panels = panel_stage(db, config)
        seconds["panels"] = _tock(t)
        t = _tick()
        estimate_stage(db, config, run_id=run_id)
        seconds["estimate"] = _tock(t)
        end(db, run_id=run_id, status="completed")
        t = _tick()
        report = report_stage(db, config, run_id=run_id, out=out)
        seconds["report"] = _tock(t)
    except KokeiluError as exc:
        end(db, run_id=run_id, status="failed", message=str(exc))
        raise
    except Exception as exc:
        end(db, run_id=run_id, status="failed", message=f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise
    return EvaluationSummary(run_id=run_id, db=db, report=report, headline=headline(db, run_id=run_id, config=config),
                             load=load, panels=panels, seconds=seconds)


def load_only(directory: Path, *, db: Path, config: EvaluationConfig, key: bytes):  # noqa: ANN201
    """``kokeilu validate DIR --db PATH``: load the valid rows of a delivery, return its validation report."""
    from pipeline.load import load_delivery

    with _db.connect(db) as con:
        _db.ensure_result_tables(con)
        return load_delivery(con, kela_dir=directory, avain_dir=directory, key=key, config=config,
                             run_id=f"validate-{_db.new_run_id()}")


def print_summary(summary: EvaluationSummary) -> None:
    """The headline table and the paths of the database and the report, in the terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if console.width < 150:
        console = Console(width=150)   # the whole table, not ellipses: a narrower terminal wraps the lines
    table = Table(title=f"Effect of the pilot (run {summary.run_id})", title_justify="left")
    for name in ("outcome", "estimator", "estimate", "95% CI", "p t(G-1)", "p WCR", "p RI",
                 "persons", "treated/all"):
        table.add_column(name, justify="left" if name in ("outcome", "estimator") else "right", no_wrap=True)
    for row in summary.headline.iter_rows(named=True):
        table.add_row(
            row["outcome"], row["estimator"], _num(row["estimate"]),
            f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}]",
            _num(row["p_value"], 3), _num(row["p_value_wild_bootstrap"], 3), _num(row["p_value_randomization"], 4),
            f"{row['n_persons']:,}" if row["n_persons"] is not None else "–",
            f"{row['n_treated_clusters']}/{row['n_clusters']}",
        )
    console.print(table)
    console.print(f"database: {summary.db}")
    if summary.report is not None:
        console.print(f"report:   {summary.report}")


def _num(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _tick() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _tock(t: dt.datetime) -> float:
    return (dt.datetime.now(dt.UTC) - t).total_seconds()


__all__ = ["EvaluationSummary", "RunFailedError", "run_evaluation"]
