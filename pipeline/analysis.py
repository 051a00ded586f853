"""Every estimate of an evaluation, from the panels to the rows of ``results.*``.

This module decides *what* is estimated (outcomes, estimators, subgroups,
inference) from the :class:`~schemas.config.EvaluationConfig`; *how* lives in
:mod:`pipeline.did` (which knows nothing of Kela) and
:mod:`pipeline.did.inference`. Disclosure control is applied here, once, to every row
before it is written: a row resting on fewer persons than the threshold keeps
its keys and is marked ``suppressed`` with its numbers withheld.

The work splits into independent units (:class:`Unit`: one per monthly or yearly
outcome, one for the AVAIN outcomes). :func:`units_inputs` reduces the panels to
what each unit estimates from, inside the database (municipality x period sums of
the whole cohort and of every subgroup level; the AVAIN assessments), reading the
person x month panel once for all monthly outcomes; :func:`run_unit` estimates a
unit from those small frames alone, so it can run in another process or on
another machine (a DuckDB connection cannot be shipped); :func:`combine` joins
the units' tables and applies disclosure control. :func:`estimate_all` runs the
units in this process and, given more than one process, in :class:`UnitWorker`
child processes too, heaviest first (the units are GIL-bound Python on small
arrays: threads would not run them side by side); an orchestrator may run them
anywhere else (Prefect's Dask task runner): the tables are the same.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import duckdb
import polars as pl

from pipeline import db as _db
from pipeline import readers
from pipeline.imports import import_in_background
from schemas.config import AVAIN_OUTCOMES, MONTHLY_OUTCOMES, YEARLY_OUTCOMES, EvaluationConfig

NUMERIC_RESULT_COLUMNS = (
    "estimate", "std_error", "ci_low", "ci_high", "p_value", "p_value_wild_bootstrap",
    "ci_low_wild_bootstrap", "ci_high_wild_bootstrap", "p_value_randomization", "std_error_cv3",
)
RESULT_TABLES = (
    "did_estimates", "event_study", "pretrend_tests", "inference", "placebo_size", "robustness", "cost",
)
COST_COLUMNS = (
    "effect_per_person_month", "effect_per_member", "effect_per_member_ci_low", "effect_per_member_ci_high",
    "effect_total", "effect_total_ci_low", "effect_total_ci_high", "observed_total", "counterfactual_total",
    "change_share",
)
ESTIMATOR_MODULES = ("pipeline.estimates", "pipeline.robustness", "pipeline.did.inference.placebo",
                     "pipeline.did.sdid", "pipeline.did.flci")
"""What :func:`run_unit` imports (SciPy among them: seconds), imported by :func:`estimate_all` while
DuckDB reads the units' inputs."""


@dataclass(frozen=True)
class Unit:
    """One independent piece of estimation work: an outcome (or the AVAIN outcomes together) and its panel."""

    kind: Literal["monthly", "yearly", "avain"]
    outcomes: tuple[str, ...]

    @property
    def label(self) -> str:
        """Short name for logs and task runs, e.g. ``monthly:received``."""
        return f"{self.kind}:{'+'.join(self.outcomes)}"


MAX_PROCESSES = 3
"""Processes :func:`default_processes` allows: the two headline outcomes are most of the work, one process
each, and a third takes the rest."""


def default_processes() -> int:
    """Processes for the estimation units: the CPUs this process may run on, at most ``MAX_PROCESSES``."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, MAX_PROCESSES))


def estimate_all(con: duckdb.DuckDBPyConnection, config: EvaluationConfig, *,
                 processes: int = 1) -> dict[str, pl.DataFrame]:
    """All results tables of one run (without ``run_id``), disclosure control applied.

    With ``processes`` > 1, that many processes less one :class:`UnitWorker` start at once (their
    imports overlap the reading of the units' inputs) and share the units with this process.
    """
    workers = [UnitWorker() for _ in range(processes - 1)]
    try:
        warm = import_in_background(ESTIMATOR_MODULES, name="kokeilu-import-estimators")
        units = estimation_units(con, config)
        inputs = units_inputs(con, units)
        warm.join()
        return finish(con, run_units(units, inputs, config, workers=workers), config)
    finally:
        for worker in workers:
            worker.close()


def estimation_units(con: duckdb.DuckDBPyConnection, config: EvaluationConfig) -> list[Unit]:
    """The units of a run in the order their rows are written: monthly outcomes, yearly outcomes, AVAIN."""
    wanted = set(config.outcomes)
    units = [Unit("monthly", (o,)) for o in MONTHLY_OUTCOMES if o in wanted]
    units += [Unit("yearly", (o,)) for o in YEARLY_OUTCOMES if o in wanted]
    avain = tuple(o for o in AVAIN_OUTCOMES if o in wanted)
    if avain and _has_rows(con, "panel.avain_assessment"):
        units.append(Unit("avain", avain))
    return units


def unit_inputs(con: duckdb.DuckDBPyConnection, unit: Unit) -> dict[str, pl.DataFrame]:
    """What one unit estimates from, read from the database (see :func:`units_inputs`)."""
    return units_inputs(con, [unit])[0]


def units_inputs(con: duckdb.DuckDBPyConnection, units: list[Unit]) -> list[dict[str, pl.DataFrame]]:
    """What each unit estimates from, reduced inside the database, in the order of ``units``.

    Monthly units get ``cells``, their outcome's :func:`~pipeline.readers.monthly_sums`
    (all monthly outcomes come from one scan of the panel); yearly units get
    ``cells``, :func:`~pipeline.readers.yearly_sums`; the AVAIN unit gets
    ``avain_assessment``, :func:`~pipeline.readers.avain_assessments` (persons as
    ranks: pseudonyms do not leave the database).
    """
    monthly = [unit.outcomes[0] for unit in units if unit.kind == "monthly"]
    sums = readers.monthly_sums(con, monthly) if monthly else {}
    inputs: list[dict[str, pl.DataFrame]] = []
    for unit in units:
        if unit.kind == "monthly":
            inputs.append({"cells": sums[unit.outcomes[0]]})
        elif unit.kind == "yearly":
            inputs.append({"cells": readers.yearly_sums(con, unit.outcomes[0])})
        else:
            inputs.append({"avain_assessment": readers.avain_assessments(con)})
    return inputs


def run_unit(frames: dict[str, pl.DataFrame], config: EvaluationConfig, unit: Unit) -> dict[str, pl.DataFrame]:
    """Every estimate of one unit from its :func:`unit_inputs`; needs no database."""
    from pipeline import estimates

    if unit.kind == "monthly":
        return estimates.monthly_outcome(frames["cells"], config, unit.outcomes[0])
    if unit.kind == "yearly":
        return estimates.yearly_outcome(frames["cells"], config, unit.outcomes[0])
    return estimates.avain_estimates(frames["avain_assessment"], config, list(unit.outcomes))


def _weight(unit: Unit, config: EvaluationConfig) -> int:
    """A unit's rough cost, to start the heaviest first: a headline monthly outcome adds placebo checks,
    subgroup inference and robustness analyses to what every monthly outcome gets."""
    if unit.kind != "monthly":
        return 0
    return 2 if unit.outcomes[0] in config.headline_outcomes else 1


def run_units(units: list[Unit], inputs: list[dict[str, pl.DataFrame]], config: EvaluationConfig, *,
              workers: list[UnitWorker] = ()) -> list[dict[str, pl.DataFrame]]:
    """Every unit's tables, in the order of ``units``, from the units' :func:`units_inputs`.

    Without workers the units run here, one after another. With workers, this
    process and each worker take the next unit, heaviest first, whoever is free
    first: a worker joins in once it has imported the estimators (a small run is
    done before that, and its workers are stopped). A unit a worker fails on is
    run here (an error is then raised here, with its own traceback). The tables do
    not depend on where a unit ran.
    """
    if not workers:
        return [run_unit(frames, config, unit) for unit, frames in zip(units, inputs, strict=True)]
    order = deque(sorted(range(len(units)), key=lambda i: _weight(units[i], config), reverse=True))
    results: list[dict[str, pl.DataFrame] | None] = [None] * len(units)
    lock = threading.Lock()
    busy: set[int] = set()  # workers running a unit: this process waits for them at the end

    def serve(w: int, worker: UnitWorker) -> None:
        if not worker.ready():
            return
        while True:
            with lock:
                if not order:
                    return
                i = order.popleft()
                busy.add(w)
            out = worker.run(units[i], inputs[i], config)
            with lock:
                busy.discard(w)
            if out is None:  # the worker failed: the unit is run here, after the others
                return
            results[i] = out

    helpers = [threading.Thread(target=serve, args=(w, worker), name=f"kokeilu-unit-worker-{w}", daemon=True)
               for w, worker in enumerate(workers)]
    for helper in helpers:
        helper.start()
    while True:
        with lock:
            if not order:
                idle = [worker for w, worker in enumerate(workers) if w not in busy]
                break
            i = order.popleft()
        results[i] = run_unit(inputs[i], config, units[i])
    for worker in idle:  # nothing left for them: do not wait for their imports
        worker.stop()
    for helper in helpers:
        helper.join()
    return [out if out is not None else run_unit(inputs[i], config, units[i]) for i, out in enumerate(results)]


class UnitWorker:
    """A child Python (``python -m pipeline.worker``) that runs the estimation units it is sent.

    Requests and answers are pickled: a unit's inputs are municipality x period
    sums (about 2 MB for a monthly outcome at national scale), its tables smaller.
    A worker that cannot start or fails answers ``None``; its units are run by the caller.
    """

    def __init__(self) -> None:
        import subprocess
        import sys
        import tempfile

        from pipeline.imports import child_env

        self._err = tempfile.TemporaryFile(prefix="kokeilu-worker-")
        self._proc: subprocess.Popen[bytes] | None = None
        self._answers = None
        self._ready = False
        self.units_run = 0
        read, write = os.pipe()
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "pipeline.worker", str(write)],
                                          stdin=subprocess.PIPE, stdout=self._err, stderr=self._err,
                                          pass_fds=(write,), env=child_env())
        except OSError:  # pragma: no cover - no child processes here: the caller runs every unit
            os.close(read)
        else:
            self._answers = os.fdopen(read, "rb")
        finally:
            os.close(write)

    def ready(self) -> bool:
        """Wait until the worker has imported the estimators; False if it failed or was stopped."""
        if not self._ready:
            self._ready = self._receive() is not None
        return self._ready

    def run(self, unit: Unit, frames: dict[str, pl.DataFrame], config: EvaluationConfig
            ) -> dict[str, pl.DataFrame] | None:
        """The unit's tables, computed by the worker; None if the worker failed."""
        import pickle

        proc = self._proc
        if proc is None or proc.stdin is None:
            return None
        try:
            pickle.dump((unit, frames, config), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            proc.stdin.flush()
        except (OSError, ValueError):
            return self._failed("its input closed")
        out = self._receive()
        self.units_run += out is not None
        return out

    def _receive(self) -> Any:
        import pickle

        if self._answers is None:
            return None
        try:
            status, payload = pickle.load(self._answers)
        except (OSError, ValueError, EOFError, pickle.UnpicklingError):
            return self._failed("it stopped")
        if status == "error":
            return self._failed(payload)
        return payload if status == "ok" else True

    def _failed(self, why: str) -> None:
        if self._proc is not None:  # not closed on purpose
            logging.getLogger(__name__).warning("estimation worker failed (%s): its units run in this process", why)
        return None

    def stop(self) -> None:
        """Stop the worker: whatever it was doing is no longer needed (a thread waiting on it gets None)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

    def close(self) -> None:
        """Stop the worker and release its pipes (once no thread waits on it)."""
        self.stop()
        if self._answers is not None:
            self._answers.close()
            self._answers = None
        self._err.close()


def combine(parts: list[dict[str, pl.DataFrame]], config: EvaluationConfig, *,
            largest_share: float | None = None) -> dict[str, pl.DataFrame]:
    """The units' tables concatenated in unit order, NaN stored as NULL, disclosure control applied
    (``largest_share``: the share of the pilot months' euros held by the largest recipients, see
    :func:`largest_share`)."""
    tables_parts: dict[str, list[pl.DataFrame]] = {name: [] for name in RESULT_TABLES}
    for part in parts:
        _extend(tables_parts, part)
    tables = {name: pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
              for name, frames in tables_parts.items()}
    tables = {name: _nan_to_null(frame) for name, frame in tables.items()}
    if largest_share is not None and tables["cost"].height:
        tables["cost"] = tables["cost"].with_columns(pl.lit(largest_share, pl.Float64).alias("largest_share"))
    return apply_disclosure(tables, config)


def finish(con: duckdb.DuckDBPyConnection, parts: list[dict[str, pl.DataFrame]],
           config: EvaluationConfig) -> dict[str, pl.DataFrame]:
    """The run's results tables: the units' tables combined (:func:`combine`, with the cost view's dominance
    share read here) and the balance table of the cohort (:func:`pipeline.balance.balance_table`)."""
    tables = combine(parts, config, largest_share=largest_share(con, config))
    if _has_rows(con, "panel.cohort"):
        from pipeline.balance import balance_table

        tables["balance"] = balance_table(con, config)
    return tables


def apply_disclosure(tables: dict[str, pl.DataFrame], config: EvaluationConfig) -> dict[str, pl.DataFrame]:
    """Every rule of :mod:`pipeline.disclosure`, in order, on the tables a run publishes.

    ``did_estimates``: primary (the treated persons carrying a row), then complements
    within subgroup families; ``inference``: withheld with the estimate it belongs to;
    ``robustness``: primary, then the headline without a withheld municipality;
    ``cost``: primary, then dominance, its euro sums withheld together.
    """
    from pipeline import disclosure as dc

    rules = dc.DisclosureRules.from_config(config.disclosure)
    est = tables["did_estimates"]
    if est.height:
        est = dc.mark_complements(dc.mark_primary(est, rules))
        tables["did_estimates"] = dc.withhold(est, NUMERIC_RESULT_COLUMNS)
        inference = tables["inference"]
        if inference.height:
            hidden = est.filter(pl.col("suppressed")).select("outcome", "estimator", "subgroup", "suppression_rule")
            inference = (inference.join(hidden, on=["outcome", "estimator", "subgroup"], how="left")
                         .with_columns(pl.col("suppression_rule").is_not_null().alias("suppressed")))
            tables["inference"] = dc.withhold(inference, ("p_value", "ci_low", "ci_high"))
    if tables["robustness"].height:
        rob = dc.mark_leave_one_out(dc.mark_primary(tables["robustness"], rules), tables["did_estimates"])
        tables["robustness"] = dc.withhold(rob, NUMERIC_RESULT_COLUMNS)
    if tables["cost"].height:
        cost = dc.mark_dominance(dc.mark_primary(tables["cost"], rules), rules)
        tables["cost"] = dc.withhold(cost, COST_COLUMNS)
    return tables


def largest_share(con: duckdb.DuckDBPyConnection, config: EvaluationConfig) -> float | None:
    """The share of the euros granted to the pilot cohort in its pilot months held by its
    ``disclosure.dominance_n`` largest recipients (None without a panel)."""
    if not _has_rows(con, "panel.person_month"):
        return None
    from pipeline.disclosure import DisclosureRules

    n = DisclosureRules.from_config(config.disclosure).dominance_n
    value = con.execute(_db.sql_text("results/cost_dominance.sql"), {"n": n}).fetchall()[0][0]
    return None if value is None else float(value)


def write_results(con: duckdb.DuckDBPyConnection, tables: dict[str, pl.DataFrame], run_id: str) -> None:
    """Insert the results tables under ``run_id`` in one transaction."""
    with _db.transaction(con):
        for table, frame in tables.items():
            if frame.height == 0:
                continue
            frame = frame.with_columns(pl.lit(run_id).alias("run_id"))
            cols = [r[0] for r in con.execute(
                "select column_name from information_schema.columns "
                "where table_schema = 'results' and table_name = ? order by ordinal_position", [table],
            ).fetchall()]
            frame = frame.select([c for c in cols if c in frame.columns])
            con.register("_frame", frame.to_arrow())
            con.execute(f"insert into results.{table} ({', '.join(frame.columns)}) select * from _frame")
            con.unregister("_frame")


def _nan_to_null(frame: pl.DataFrame) -> pl.DataFrame:
    """NaN (an undefined statistic, e.g. a jackknife without a second treated cluster) is stored as NULL."""
    floats = [c for c, t in frame.schema.items() if t.is_float()]
    return frame.with_columns([pl.col(c).fill_nan(None) for c in floats]) if floats else frame


def _extend(parts: dict[str, list[pl.DataFrame]], new: dict[str, Any]) -> None:
    for name, frame in new.items():
        if frame is not None and frame.height:
            parts[name].append(frame)


def _has_rows(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    exists = con.execute(
        "select count(*) from duckdb_tables() where schema_name = ? and table_name = ?", [schema, name]
    ).fetchall()[0][0]
    return bool(exists) and con.execute(f"select count(*) > 0 from {table}").fetchall()[0][0]
