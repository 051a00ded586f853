"""The ``evaluate`` flow: thin Prefect tasks over :mod:`pipeline.evaluation`.

Business logic lives in ``pipeline/``; this module only adds orchestration:
retries on I/O, caching of the load keyed on the input files' hashes, typed
parameters and artifacts (the headline table, the validation summary).

The expectation suites run in a child process of lower priority, started before the
load (it imports Great Expectations meanwhile) and handed the suites' frames once
the delivery is loaded; it validates them while the panels are built and the
estimates computed (:class:`pipeline.evaluation.PendingSuites`), and their
outcomes are recorded before the run is marked completed.

Caching is keyed on the input files' SHA-256 one level down, where it is safe: the
loader's manifest (``meta.loaded_files``) skips a file already loaded with the same
hash, so an unchanged delivery is never reloaded, even into a database rebuilt
from scratch (a cached Prefect result would wrongly skip that).

With ``task_runner="dask"`` the estimation units (:func:`pipeline.analysis.estimation_units`)
run as mapped tasks of the subflow ``estimate on dask`` on a ``DaskTaskRunner``: on the
scheduler at ``dask_address``, or on a local cluster started for the subflow. Their
inputs (the panels reduced to municipality x period sums, and the AVAIN assessments)
are read and their tables written in the flow process, which alone holds the DuckDB
file; the write is one transaction, as on the default runner.

The pseudonymisation key is never a flow parameter (Prefect stores parameters):
the tasks that need it read it themselves, from the Secret block
``kokeilu-pseudonym-key`` or the ``KOKEILU_PSEUDONYM_KEY`` environment variable.

Retries are for what may pass on a second try (a file system or database hiccup).
An error the user must act on (:class:`~pipeline.errors.KokeiluError`: a bad or
foreign key, an unusable delivery, a refused file, a month out of its volume band)
is never retried, and Prefect's logs carry its one line without a traceback: the
flow ends with the same message and exit code as ``kokeilu run --no-orchestrate``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from pipeline import analysis
from pipeline import db as _db
from pipeline import evaluation as ev
from pipeline.errors import KokeiluError
from schemas.config import EvaluationConfig

KEY_ENV = "KOKEILU_PSEUDONYM_KEY"
SECRET_BLOCK = "kokeilu-pseudonym-key"
LOCAL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "processes": True}
"""The local Dask cluster started when no scheduler address is given."""


class EvaluateParameters(BaseModel):
    """Typed parameters of the evaluate flow."""

    model_config = ConfigDict(frozen=True)

    kela: Path
    avain: Path | None = None
    corrections: Path | None = None
    db: Path = Path("outputs/evaluation.duckdb")
    out: Path = Path("outputs")
    config: EvaluationConfig = EvaluationConfig()
    task_runner: Literal["default", "dask"] = "default"
    dask_address: str | None = None
    processes: int | None = Field(default=None, ge=1)
    """Processes sharing the estimation units on the default runner (None: one per CPU, at most three)."""
    allow_shrink: str | None = None
    """The reason to load Kela-style files that would empty or shrink their month (None: refuse them)."""


def retry_unless_expected(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task unless it failed with an error the user must act on (retrying cannot help)."""
    return not isinstance(state.data, KokeiluError)


class _ExpectedErrorsInOneLine(logging.Filter):
    """Drop the traceback from Prefect's log record of a :class:`KokeiluError`: its message is the whole story."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, KokeiluError):
            record.exc_info, record.exc_text = None, None
        return True


_ONE_LINE = _ExpectedErrorsInOneLine()
for _name in ("prefect.flow_runs", "prefect.task_runs"):
    logging.getLogger(_name).addFilter(_ONE_LINE)


def resolve_key() -> bytes:
    """The pseudonymisation key: the Prefect Secret block if it exists, else the environment."""
    value = os.environ.get(KEY_ENV, "")
    if not value:
        try:
            from prefect.blocks.system import Secret

            value = Secret.load(SECRET_BLOCK).get()
        except Exception:  # noqa: BLE001 - no block, or no API: fall through to the one-line error
            value = ""
    if not value:
        from pipeline.errors import InputError

        raise InputError(f"no pseudonymisation key: set {KEY_ENV} or create the Prefect Secret block '{SECRET_BLOCK}'")
    return value.encode("utf-8")


@task(name="begin run", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_expected,
      cache_policy=NO_CACHE)
def begin(params: EvaluateParameters) -> str:
    """Check the key against the database, mark abandoned runs, record the run in meta.runs."""
    return ev.begin(params.db, params.config, kela=params.kela, avain=params.avain, corrections=params.corrections,
                    key=resolve_key())


@task(name="load and validate", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_unless_expected,
      cache_policy=NO_CACHE)
def load(params: EvaluateParameters, run_id: str) -> dict[str, Any]:
    """Load the delivery into staging, quarantine bad rows, check the months' volumes (the expectation
    suites run beside the panels and the estimation, see ``start_suites``)."""
    return ev.load_stage(params.db, params.config, run_id=run_id, key=resolve_key(), kela=params.kela,
                         avain=params.avain, corrections=params.corrections, out=params.out, suites=False,
                         allow_shrink=params.allow_shrink)


@task(name="start expectation suites", retries=1, retry_condition_fn=retry_unless_expected, cache_policy=NO_CACHE)
def start_suites(params: EvaluateParameters, run_id: str) -> ev.PendingSuites:
    """Start the suites' child process of lower priority: it imports Great Expectations while the delivery loads."""
    return ev.PendingSuites(run_id=run_id, out=params.out)


@task(name="hand over expectation suites", cache_policy=NO_CACHE)
def hand_over_suites(params: EvaluateParameters, pending: ev.PendingSuites) -> None:
    """Read the suites' frames from the loaded delivery (and run its DuckDB-side checks); hand them to the child."""
    pending.prepare(params.db)


@task(name="record expectation suites", cache_policy=NO_CACHE)
def finish_suites(params: EvaluateParameters, pending: ev.PendingSuites) -> dict[str, Any]:
    """Wait for the suites and record their outcomes in meta.validation_results."""
    return pending.finish(params.db)


@task(name="build panels", cache_policy=NO_CACHE)
def panels(params: EvaluateParameters) -> dict[str, Any]:
    """Rebuild the cohort and the panels."""
    return ev.panel_stage(params.db, params.config)


@task(name="estimate and infer", cache_policy=NO_CACHE)
def estimate(params: EvaluateParameters, run_id: str) -> None:
    """Estimate every effect with its inference and write results."""
    ev.estimate_stage(params.db, params.config, run_id=run_id, processes=params.processes)


@task(name="read estimation inputs", cache_policy=NO_CACHE)
def estimation_inputs(params: EvaluateParameters) -> tuple[list[analysis.Unit], list[dict[str, Any]]]:
    """The estimation units and, for each, what it estimates from (from the database, in the flow process)."""
    with _db.connect(params.db, read_only=True) as con:
        units = analysis.estimation_units(con, params.config)
        return units, analysis.units_inputs(con, units)


@task(name="estimate unit", task_run_name="estimate {unit.label}", cache_policy=NO_CACHE)
def estimate_unit(frames: dict[str, Any], config: EvaluationConfig, unit: analysis.Unit) -> dict[str, Any]:
    """Every estimate of one unit, from its inputs alone (runs on any worker)."""
    return analysis.run_unit(frames, config, unit)


@task(name="write estimates", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_expected,
      cache_policy=NO_CACHE)
def write_estimates(params: EvaluateParameters, run_id: str, parts: list[dict[str, Any]]) -> None:
    """Combine the units' tables, apply disclosure control and write them under ``run_id`` in one transaction."""
    with _db.connect(params.db) as con:
        tables = analysis.finish(con, parts, params.config)
        analysis.write_results(con, tables, run_id)


@flow(name="estimate on dask", validate_parameters=True)
def estimate_distributed(params: EvaluateParameters, run_id: str) -> None:
    """Fan the estimation units out over the task runner; read and write in this process."""
    units, inputs = estimation_inputs(params)
    with _workers_report_here():
        parts = estimate_unit.map(inputs, config=unmapped(params.config), unit=units)
    write_estimates(params, run_id, parts.result())


@contextmanager
def _workers_report_here() -> Iterator[None]:
    """Tasks submitted in this block report to this flow's Prefect API.

    Without ``PREFECT_API_URL`` the flow runs against a temporary server that only
    it knows; each Dask worker would start a server of its own. Submitted tasks
    carry the settings in force, so they are given the flow's server address.
    """
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL, temporary_settings

    context = FlowRunContext.get()
    if PREFECT_API_URL.value() or context is None:
        yield
        return
    with temporary_settings(updates={PREFECT_API_URL: str(context.client.api_url)}):
        yield


def dask_runner(address: str | None) -> Any:
    """A Dask task runner on the scheduler at ``address``, or on a local cluster when there is none."""
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs=dict(LOCAL_CLUSTER))


@task(name="write report", retries=1, retry_condition_fn=retry_unless_expected, cache_policy=NO_CACHE)
def report(params: EvaluateParameters, run_id: str) -> Path:
    """Write the HTML report."""
    return ev.report_stage(params.db, params.config, run_id=run_id, out=params.out)


@task(name="finish run", retries=2, retry_delay_seconds=2, retry_condition_fn=retry_unless_expected,
      cache_policy=NO_CACHE)
def finish(params: EvaluateParameters, run_id: str, status: str, message: str | None = None) -> None:
    """Mark the run completed or failed."""
    ev.end(params.db, run_id=run_id, status=status, message=message)


@flow(name="evaluate", log_prints=True, validate_parameters=True)
def evaluate(params: EvaluateParameters) -> str:
    """Load, validate, build panels, estimate, infer and report; returns the run id."""
    run_id = begin(params)
    pending: ev.PendingSuites | None = None
    try:
        pending = start_suites(params, run_id)
        load_summary = load(params, run_id)
        hand_over_suites(params, pending)
        panels(params)
        if params.task_runner == "dask":
            estimate_distributed.with_options(task_runner=dask_runner(params.dask_address))(params, run_id)
        else:
            estimate(params, run_id)
        load_summary["quality"] = finish_suites(params, pending)
        _validation_artifact(load_summary)
        finish(params, run_id, "completed")
    except Exception as exc:
        finish(params, run_id, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise
    finally:
        if pending is not None:
            pending.close()
    report(params, run_id)
    _headline_artifact(ev.headline(params.db, run_id=run_id, config=params.config), run_id)
    return run_id


def _validation_artifact(summary: dict[str, Any]) -> None:
    lines = ["# Validation summary", "", "| item | value |", "|---|---|"]
    for k, v in summary.items():
        if isinstance(v, int | float | str):
            lines.append(f"| {k} | {v} |")
    quality = summary.get("quality") or {}
    if quality:
        lines.append(f"| expectations | {quality.get('expectations')} |")
        lines.append(f"| expectations failed | {quality.get('failed')} |")
    create_markdown_artifact(markdown="\n".join(lines), key="validation-summary",
                             description="Rows in, staged and quarantined")


def _headline_artifact(frame: Any, run_id: str) -> None:
    rows = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}
            for r in frame.iter_rows(named=True)]
    create_table_artifact(table=rows, key="headline-effects", description=f"Headline effects of run {run_id}")


def run_evaluate_flow(*, kela: Path, avain: Path | None, db: Path, out: Path, config: EvaluationConfig,
                      key: bytes, corrections: Path | None = None,
                      task_runner: Literal["default", "dask"] = "default",
                      dask_address: str | None = None, processes: int | None = None,
                      allow_shrink: str | None = None) -> ev.EvaluationSummary:
    """Run the flow in-process (ephemeral Prefect unless ``PREFECT_API_URL`` is set) and summarise it.

    ``task_runner="dask"`` fans the estimation out on Dask: on the scheduler at
    ``dask_address`` (e.g. ``tcp://10.0.0.5:8786``), else on a local two-worker cluster.
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ[KEY_ENV] = key.decode("utf-8")
    params = EvaluateParameters(kela=kela, avain=avain, corrections=corrections, db=db, out=out, config=config,
                                task_runner=task_runner, dask_address=dask_address, processes=processes,
                                allow_shrink=allow_shrink)
    run_id = evaluate(params)
    return ev.EvaluationSummary(run_id=run_id, db=db, report=out / "report" / "index.html",
                                headline=ev.headline(db, run_id=run_id, config=config))
