"""The ``evaluate`` flow: thin Prefect tasks over :mod:`pipeline.evaluation`.

Business logic lives in ``pipeline/``; this module only adds orchestration:
retries on I/O, caching of the load keyed on the input files' hashes, typed
parameters and artifacts (the headline table, the validation summary).

Caching is keyed on the input files' SHA-256 one level down, where it is safe: the
loader's manifest (``meta.loaded_files``) skips a file already loaded with the same
hash, so an unchanged delivery is never reloaded, even into a database rebuilt
from scratch (a cached Prefect result would wrongly skip that).

The pseudonymisation key is never a flow parameter (Prefect stores parameters):
the load task reads it itself, from the Secret block ``kokeilu-pseudonym-key``
or the ``KOKEILU_PSEUDONYM_KEY`` environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from pipeline import db as _db
from pipeline import evaluation as ev
from schemas.config import EvaluationConfig

KEY_ENV = "KOKEILU_PSEUDONYM_KEY"
SECRET_BLOCK = "kokeilu-pseudonym-key"


class EvaluateParameters(BaseModel):
    """Typed parameters of the evaluate flow."""

    model_config = ConfigDict(frozen=True)

    kela: Path
    avain: Path | None = None
    corrections: Path | None = None
    db: Path = Path("outputs/evaluation.duckdb")
    out: Path = Path("outputs")
    config: EvaluationConfig = EvaluationConfig()


def resolve_key() -> bytes:
    """Caching is keyed on the input files' SHA-256 one level down, where it is safe: the
loader's manifest (``meta.loaded_files``) skips a file already loaded with the same
hash, so an unchanged delivery is never reloaded, even into a database rebuilt
from scratch (a cached Prefect result would wrongly skip that).

The pseudonymisation key: the Prefect Secret block if it exists, else the environment."""
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


@task(name="begin run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def begin(params: EvaluateParameters) -> str:
    """Record the run in meta.runs."""
    return ev.begin(params.db, params.config, kela=params.kela, avain=params.avain, corrections=params.corrections)


@task(name="load and validate", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def load(params: EvaluateParameters, run_id: str) -> dict[str, Any]:
    """Load the delivery into staging, quarantine bad rows, run the quality suites."""
    return ev.load_stage(params.db, params.config, run_id=run_id, key=resolve_key(), kela=params.kela,
                         avain=params.avain, corrections=params.corrections, out=params.out)


@task(name="build panels", cache_policy=NO_CACHE)
def panels(params: EvaluateParameters) -> dict[str, Any]:
    """Rebuild the cohort and the panels."""
    return ev.panel_stage(params.db, params.config)


@task(name="estimate and infer", cache_policy=NO_CACHE)
def estimate(params: EvaluateParameters, run_id: str) -> None:
    """Estimate every effect with its inference and write results."""
    ev.estimate_stage(params.db, params.config, run_id=run_id)


@task(name="write report", retries=1, cache_policy=NO_CACHE)
def report(params: EvaluateParameters, run_id: str) -> Path:
    """Write the HTML report."""
    return ev.report_stage(params.db, params.config, run_id=run_id, out=params.out)


@task(name="finish run", retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def finish(params: EvaluateParameters, run_id: str, status: str, message: str | None = None) -> None:
    """Mark the run completed or failed."""
    ev.end(params.db, run_id=run_id, status=status, message=message)


@flow(name="evaluate", log_prints=True, validate_parameters=True)
def evaluate(params: EvaluateParameters) -> str:
    """Load, validate, build panels, estimate, infer and report; returns the run id."""
    run_id = begin(params)
    try:
        load_summary = load(params, run_id)
        _validation_artifact(load_summary)
        panels(params)
        estimate(params, run_id)
        finish(params, run_id, "completed")
    except Exception as exc:
        finish(params, run_id, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise
    report(params, run_id)
    _headline_artifact(ev.headline(params.db, run_id=run_id, config=params.config), run_id)
    return run_id


def _validation_artifact(summary: dict[str, Any]) -> None:
    lines = ["# Validation summary", "", "| item | value |", "|---|---|"]
    for k, v in summary.items():
        if isinstance(v, int | float | str):
            lines.append(f"| {k} | {v} |")
    create_markdown_artifact(markdown="\n".join(lines), key="validation-summary",
                             description="Rows in, staged and quarantined")


def _headline_artifact(frame: Any, run_id: str) -> None:
    rows = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}
            for r in frame.iter_rows(named=True)]
    create_table_artifact(table=rows, key="headline-effects", description=f"Headline effects of run {run_id}")


def run_evaluate_flow(*, kela: Path, avain: Path | None, db: Path, out: Path, config: EvaluationConfig,
                      key: bytes, corrections: Path | None = None, task_runner: Any = None) -> ev.EvaluationSummary:
    """Run the flow in-process (ephemeral Prefect unless ``PREFECT_API_URL`` is set) and summarise it."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ[KEY_ENV] = key.decode("utf-8")
    params = EvaluateParameters(kela=kela, avain=avain, corrections=corrections, db=db, out=out, config=config)
    runner = evaluate if task_runner is None else evaluate.with_options(task_runner=task_runner)
    run_id = runner(params)
    return ev.EvaluationSummary(run_id=run_id, db=db, report=out / "report" / "index.html",
                                headline=ev.headline(db, run_id=run_id, config=config))
