"""One evaluation run, stage by stage, without an orchestrator.

The Prefect flow in ``flows/evaluate.py`` calls these same stage functions as
tasks; :func:`run_evaluation` runs them in sequence for a notebook or for
``kokeilu run --no-orchestrate``. Each stage commits its own transaction, so a
run killed at any point leaves the database at its last good state, and a run
that fails is recorded as ``failed`` in ``meta.runs`` with a one-line reason.

A stage takes the database as a path (it opens and closes it: a task of the
flow) or as an open connection: :func:`run_evaluation` keeps one connection from
the load to the end of the estimation, so DuckDB neither checkpoints and closes
the file between stages nor reads back from disk what the stage before wrote.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
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
          corrections: Path | None = None, key: bytes) -> str:
    """Check the key, create the results tables if needed and record a new run as ``running``.

    Under another pseudonymisation key than the one that built the database the run
    stops here, before it writes anything
    (:class:`~pipeline.load.guards.KeyMismatchError`). Runs of this host whose
    process died while ``running`` are marked ``abandoned``. The input files are
    listed now; their SHA-256 is filled in by :func:`load_stage` from the bytes the
    loader reads (hashing 1 GB twice costs seconds).
    """
    from pipeline.load import guards
    from pipeline.pseudonym import Pseudonymiser

    Pseudonymiser(key)  # a key too short is refused before anything is written
    run_id = _db.new_run_id()
    inputs = _db.input_manifest(kela, avain, corrections, hashed=False)
    with _db.connect(db) as con:
        guards.check_key(con, key, db)
        _db.ensure_result_tables(con)
        guards.mark_abandoned(con, noticed_by=run_id)
        _db.start_run(con, run_id=run_id, config_json=config.model_dump_json(), inputs=inputs)
    return run_id


Database = Path | duckdb.DuckDBPyConnection
"""Where a stage works: a database file (opened and closed by the stage) or an open connection."""


def load_stage(db: Database, config: EvaluationConfig, *, run_id: str, key: bytes, kela: Path,
               avain: Path | None, corrections: Path | None, out: Path, suites: bool = True,
               allow_shrink: str | None = None) -> dict[str, Any]:
    """Load the delivery (and any corrections) into staging, check the months' volumes, then run the quality
    suites (unless ``suites`` is false: the caller runs them beside the estimation, see :class:`PendingSuites`).

    The run stops here (exit 1), before anything is estimated, when a file was
    refused because it would empty or shrink its month (``allow_shrink``: the reason
    to load such files anyway) or when a month's volume departs from its
    neighbours' (:func:`~pipeline.load.guards.check_month_volumes`).
    """
    from pipeline.load import guards, load_deliveries, refusals

    # Great Expectations takes seconds to import: it does so while the delivery loads
    warm = import_in_background(("great_expectations", "pipeline.quality"), name="kokeilu-import-quality") \
        if suites else None
    with _db.using(db) as con:
        deliveries = [(kela, avain)]
        if corrections is not None and corrections.is_dir():
            deliveries.append((corrections, None))
        reports = load_deliveries(con, deliveries, key=key, config=config, run_id=run_id,
                                  allow_shrink=allow_shrink)
        summary = reports[0].summary()
        if len(reports) > 1:
            summary["corrections"] = reports[1].summary()
        files = [f for report in reports for f in report.files]
        known = {Path(f.path): f.sha256 for f in files if f.path and f.sha256}
        _db.record_inputs(con, run_id=run_id, inputs=_db.input_manifest(kela, avain, corrections, known=known))
        if refused := refusals(reports):
            first = refused[0]
            more = f" (and {len(refused) - 1} more refused files)" if len(refused) > 1 else ""
            raise guards.RefusedDeliveryError(f"{first.file} refused ({first.file_rule}): {first.detail}{more}")
        loading = config.loading
        guards.check_month_volumes(con, run_id=run_id, band=loading.month_volume_band,
                                   neighbours=loading.month_volume_neighbours)
        if warm is None:
            return summary
        warm.join()
        try:
            from pipeline.quality import run_quality_checks
        except ImportError:  # pragma: no cover - quality suites not installed
            return summary
        summary["quality"] = run_quality_checks(con, run_id=run_id, docs_dir=out / "data_docs")
    return summary


SUITES_NICENESS = 10
"""How much lower the priority of the expectation suites' child process is than the run's own."""


class PendingSuites:
    """The expectation suites of a run, run by Great Expectations in a child process of lower priority.

    Great Expectations costs seconds of CPU to import and to run, holding the GIL,
    while loading and building the panels keep both cores busy and the estimation
    leaves one mostly idle. So a child Python (``python -m pipeline.quality``, which
    imports nothing of the caller's script) at a lower priority imports GX; once
    the delivery is loaded, the suites' frames are read here (and the DuckDB-side
    checks of large tables run here) and handed to it; it validates them and writes
    the Data Docs with the CPU the run leaves, and :meth:`finish` records the outcomes in
    ``meta.validation_results`` before the run is marked completed. If the child
    cannot be started or fails, the suites run in this process, in :meth:`finish`.
    """

    def __init__(self, *, run_id: str, out: Path) -> None:
        """Start the child: it imports GX, then waits for the frames :meth:`prepare` hands it."""
        import subprocess
        import sys
        import tempfile

        from pipeline.worker import child_env

        self.run_id, self.docs = run_id, out / "data_docs"
        self.suites: Any = None
        self._feeder: Any = None
        self._tmp = tempfile.TemporaryDirectory(prefix="kokeilu-suites-")
        work = Path(self._tmp.name)
        self._child: subprocess.Popen[bytes] | None = None
        try:
            with open(work / "stderr", "wb") as err:
                self._child = subprocess.Popen(
                    [sys.executable, "-m", "pipeline.quality", str(work), str(SUITES_NICENESS)],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=child_env())
        except OSError:  # pragma: no cover - no child processes here: the suites run in finish()
            self._child = None

    def prepare(self, db: Database) -> None:
        """Read the suites' frames from the loaded database (and run its DuckDB-side checks); hand them over.

        A run starts the child before it loads the delivery: importing GX, its
        largest cost, then takes the CPU the start of a run leaves idle.
        """
        import pickle
        import threading

        from pipeline.quality import prepare_suites

        with _db.using(db) as con:
            self.suites = prepare_suites(con)
        payload = pickle.dumps((self.suites.gx, self.docs), protocol=pickle.HIGHEST_PROTOCOL)
        # the child reads its frames once GX is imported: a thread waits to hand them over
        self._feeder = threading.Thread(target=self._feed, args=(payload,), name="kokeilu-suites", daemon=True)
        self._feeder.start()

    def _feed(self, payload: bytes) -> None:
        if self._child is None or self._child.stdin is None:
            return
        try:
            with self._child.stdin:
                self._child.stdin.write(payload)
        except (BrokenPipeError, OSError):  # the child died: finish() runs the suites here
            pass

    def finish(self, db: Database) -> dict[str, Any]:
        """Wait for the suites, record their outcomes in ``db``; the summary ``load_stage`` would have returned."""
        import pickle

        from pipeline.quality import record_suites, run_suites

        if self.suites is None:
            self.prepare(db)
        by_suite = None
        if self._child is not None:
            work = Path(self._tmp.name)
            if self._child.wait() == 0 and (work / "out.pickle").exists():
                by_suite = pickle.loads((work / "out.pickle").read_bytes())
            elif err := (work / "stderr").read_text("utf-8", "replace").strip():
                import logging  # a GX error is raised again below, in this process, with its own message

                logging.getLogger(__name__).warning("expectation suites child failed: %s", err.splitlines()[-1])
        self.close()
        if by_suite is None:
            by_suite = run_suites(self.suites.gx, self.docs)
        with _db.using(db) as con:
            return record_suites(con, self.run_id, self.suites, by_suite, self.docs)

    def close(self) -> None:
        """Stop the child (a run that fails does not wait for its suites) and remove its files."""
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
            self._child.wait()
        if self._feeder is not None:
            self._feeder.join()
        self._child = None
        self._tmp.cleanup()


def panel_stage(db: Database, config: EvaluationConfig) -> dict[str, Any]:
    """Rebuild every panel from staging under the configuration's schedule and cohort rules."""
    from pipeline.panels import build_panels

    with _db.using(db) as con:
        report = build_panels(con, config)
    return report if isinstance(report, dict) else getattr(report, "__dict__", {})


def estimate_stage(db: Database, config: EvaluationConfig, *, run_id: str, processes: int | None = None) -> None:
    """Estimate every effect with its inference and write them under ``run_id`` in one transaction.

    The estimation units run in ``processes`` processes (default: one per CPU, at most
    :data:`~pipeline.analysis.MAX_PROCESSES`; see :func:`~pipeline.analysis.estimate_all`).
    """
    from pipeline.analysis import default_processes, estimate_all, write_results

    with _db.using(db) as con:
        tables = estimate_all(con, config, processes=default_processes() if processes is None else processes)
        write_results(con, tables, run_id)


def report_stage(db: Path, config: EvaluationConfig, *, run_id: str, out: Path) -> Path:
    """Write the HTML report of the run."""
    from pipeline.report import build_report

    return build_report(db, out / "report", run_id=run_id, config=config)


def end(db: Database, *, run_id: str, status: str, message: str | None = None) -> None:
    """Mark the run completed or failed."""
    with _db.using(db) as con:
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
                   key: bytes, corrections: Path | None = None, processes: int | None = None,
                   allow_shrink: str | None = None) -> EvaluationSummary:
    """The whole evaluation in sequence: load, panels, estimates with inference, report (``processes``:
    see :func:`estimate_stage`; ``allow_shrink``: see :func:`load_stage`)."""
    seconds: dict[str, float] = {}
    run_id = begin(db, config, kela=kela, avain=avain, corrections=corrections, key=key)
    suites: PendingSuites | None = None
    try:
        suites = PendingSuites(run_id=run_id, out=out)  # GX in a child process: it imports GX meanwhile
        with _db.connect(db) as con:  # one connection from the load to the end of the estimation
            t = _tick()
            load = load_stage(con, config, run_id=run_id, key=key, kela=kela, avain=avain,
                              corrections=corrections, out=out, suites=False, allow_shrink=allow_shrink)
            suites.prepare(con)  # its frames, validated beside the panels and the estimation
            seconds["load"] = _tock(t)
            t = _tick()
            panels = panel_stage(con, config)
            seconds["panels"] = _tock(t)
            t = _tick()
            estimate_stage(con, config, run_id=run_id, processes=processes)
            seconds["estimate"] = _tock(t)
            t = _tick()
            load["quality"] = suites.finish(con)
            seconds["quality"] = _tock(t)
            end(con, run_id=run_id, status="completed")
        t = _tick()
        report = report_stage(db, config, run_id=run_id, out=out)
        seconds["report"] = _tock(t)
    except KokeiluError as exc:  # the run's connection is closed by now: the run is marked on a new one
        end(db, run_id=run_id, status="failed", message=str(exc))
        raise
    except Exception as exc:
        end(db, run_id=run_id, status="failed", message=f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise
    finally:
        if suites is not None:
            suites.close()
    return EvaluationSummary(run_id=run_id, db=db, report=report, headline=headline(db, run_id=run_id, config=config),
                             load=load, panels=panels, seconds=seconds)


def load_only(directory: Path, *, db: Path, config: EvaluationConfig, key: bytes,  # noqa: ANN201
              allow_shrink: str | None = None):
    """``kokeilu validate DIR --db PATH``: load the valid rows of a delivery, return its validation report
    (nothing is written under another key than the one that built ``db``)."""
    from pipeline.load import guards, load_delivery

    with _db.connect(db) as con:
        guards.check_key(con, key, db)
        _db.ensure_result_tables(con)
        return load_delivery(con, kela_dir=directory, avain_dir=directory, key=key, config=config,
                             run_id=f"validate-{_db.new_run_id()}", allow_shrink=allow_shrink)


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
