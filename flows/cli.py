"""The ``kokeilu`` command.

Start-up stays fast: Prefect, Great Expectations, linearmodels and the estimators
are imported inside the commands that need them, never at module level, so
``kokeilu --help`` imports none of them.

Every failure the user can cause ends in one line on stderr and a documented exit
code, never a traceback:

====  ==========================================================================
0     success (``validate``: the delivery keeps its contract)
1     ``validate``: contract violations; ``run``/``demo``: the run failed or was
      refused (a file that would empty or shrink its month, a month whose volume
      departs from its neighbours'); the database is at its last good state
2     unusable input or arguments: a missing directory, a bad configuration, no
      key or a key too short, a key other than the one that built the database,
      a database in use by another run
3     an internal error (a bug: ``KOKEILU_DEBUG=1`` shows the traceback)
130   interrupted
====  ==========================================================================
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

app = typer.Typer(
    name="kokeilu",
    help="Evaluate Finland's activating social security pilot from Kela-style and AVAIN-style register extracts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_DB = Path("outputs/evaluation.duckdb")
DEFAULT_OUT = Path("outputs")
KEY_ENV = "KOKEILU_PSEUDONYM_KEY"


class TaskRunner(str, Enum):
    """Where the flow's estimation work runs."""

    default = "default"
    dask = "dask"


class Scale(str, Enum):
    """Sizes of a synthetic delivery."""

    sample = "sample"
    small = "small"
    medium = "medium"
    national = "national"


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit."""
    typer.echo(f"kokeilu: {message}", err=True)
    raise typer.Exit(code)


def one_line_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Turn every error the user can act on (:class:`~pipeline.errors.KokeiluError`) into its one line and
    exit code."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> None:
        from pipeline.errors import KokeiluError

        try:
            command(*args, **kwargs)
        except KokeiluError as exc:
            fail(str(exc), exc.exit_code)

    return wrapper


ALLOW_SHRINK_HELP = ("Load Kela-style files that would empty or shrink their month by more than "
                     "loading.max_month_shrink; the reason is kept in meta.loaded_files.override_reason.")


def _config(path: Path | None):  # noqa: ANN202 - the config type is imported lazily
    from schemas.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc))


def _key() -> bytes:
    value = os.environ.get(KEY_ENV, "")
    if not value:
        fail(
            f"no pseudonymisation key: set {KEY_ENV} (e.g. `export {KEY_ENV}=$(openssl rand -hex 32)`), "
            "or store it in the Prefect Secret block 'kokeilu-pseudonym-key'"
        )
    return value.encode("utf-8")


@app.command()
@one_line_errors
def generate(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the delivery into.")],
    scale: Annotated[Scale, typer.Option(help="Size of the delivery.")] = Scale.small,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 20180101,
    anticipation: Annotated[bool, typer.Option(help="Plant an anticipation effect in Tampere from 2017-11.")] = False,
    selection: Annotated[float, typer.Option(
        min=0, help="Plant selection on observables of this strength (1 = the documented one): pilot cohorts "
                    "younger and more often single, young single recipients' receipt falling faster over "
                    "2018-2019; truth.json states the unconditional DiD's bias.")] = 0.0,
) -> None:
    """Write a synthetic Kela-style and AVAIN-style delivery with known planted effects and truth.json."""
    from fixtures.generator import generate as _generate

    truth = _write_delivery(_generate, out, scale=scale.value, seed=seed, anticipation=anticipation,
                            selection=selection)
    typer.echo(
        f"wrote {scale.value} delivery to {out} (seed {seed}): "
        f"{truth['rows']['kela']:,} Kela-style rows, {truth['rows']['avain']:,} AVAIN-style rows, "
        f"cohort {truth['cohort_size']:,}; planted truth in {out / 'truth.json'}"
    )


@app.command()
@one_line_errors
def validate(
    directory: Annotated[Path, typer.Argument(help="Delivery directory (Kela-style and/or AVAIN-style files).")],
    db: Annotated[Path | None, typer.Option("--db", help="Also load the valid rows into this DuckDB file.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Evaluation configuration (TOML).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    allow_shrink: Annotated[str | None, typer.Option("--allow-shrink", metavar="REASON",
                                                      help=ALLOW_SHRINK_HELP)] = None,
) -> None:
    """Check every extract in DIRECTORY against the contracts: exit 0 clean, 1 violations, 2 unusable input."""
    cfg = _config(config)
    key = _key() if db is not None else None
    _check_reason(allow_shrink)
    from pipeline.load import validate_delivery

    if not directory.exists():
        fail(f"{directory} does not exist")
    if db is None:
        report = validate_delivery(directory, config=cfg, allow_empty=allow_shrink is not None)
    else:
        from pipeline.evaluation import load_only

        report = load_only(directory, db=db, config=cfg, key=key, allow_shrink=allow_shrink)
    if as_json:
        typer.echo(report.to_json())
    else:
        report.render()
    raise typer.Exit(report.exit_code)


@app.command()
@one_line_errors
def run(
    kela: Annotated[Path, typer.Option("--kela", help="Directory of Kela-style monthly files.")],
    avain: Annotated[Path | None, typer.Option("--avain", help="Directory of AVAIN-style files.")] = None,
    corrections: Annotated[Path | None, typer.Option(
        "--corrections", help="Directory of re-delivered Kela-style months, loaded after --kela: each file "
                              "replaces its month.")] = None,
    db: Annotated[Path, typer.Option("--db", help="Results database (DuckDB).")] = DEFAULT_DB,
    config: Annotated[Path | None, typer.Option("--config", help="Evaluation configuration (TOML).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for the report and Data Docs.")] = DEFAULT_OUT,
    orchestrate: Annotated[bool, typer.Option(help="Run as a Prefect flow (default) or as plain Python.")] = True,
    task_runner: Annotated[TaskRunner, typer.Option(
        "--task-runner", help="Estimate on Prefect's default runner or fan out on Dask.")] = TaskRunner.default,
    dask_address: Annotated[str | None, typer.Option(
        "--dask-address", help="Dask scheduler for --task-runner dask, e.g. tcp://10.0.0.5:8786 "
                               "(default: a local cluster).")] = None,
    processes: Annotated[int | None, typer.Option(
        "--processes", min=1, help="Processes sharing the estimation (default: one per CPU, at most 3; "
                                   "1: all in the run's process). Not with --task-runner dask.")] = None,
    allow_shrink: Annotated[str | None, typer.Option("--allow-shrink", metavar="REASON",
                                                      help=ALLOW_SHRINK_HELP)] = None,
) -> None:
    """The full evaluation: load, validate, build panels, estimate, write results and the report."""
    cfg = _config(config)
    key = _key()
    _check_reason(allow_shrink)
    for label, path in (("--kela", kela), ("--avain", avain), ("--corrections", corrections)):
        if path is not None and not path.is_dir():
            fail(f"{label} {path}: not a directory")
    if dask_address and task_runner is not TaskRunner.dask:
        fail("--dask-address needs --task-runner dask")
    if task_runner is TaskRunner.dask and not orchestrate:
        fail("--task-runner dask needs the Prefect flow: drop --no-orchestrate")
    if task_runner is TaskRunner.dask and processes is not None:
        fail("--processes is for the default task runner: Dask decides where the estimation runs")
    _run_and_print(kela=kela, avain=avain, db=db, out=out, cfg=cfg, key=key, orchestrate=orchestrate,
                   corrections=corrections, task_runner=task_runner.value, dask_address=dask_address,
                   processes=processes, allow_shrink=allow_shrink)


@app.command()
@one_line_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Directory for the delivery, database and report.")] = DEFAULT_OUT,
    scale: Annotated[Scale, typer.Option(help="Size of the generated delivery.")] = Scale.small,
    seed: Annotated[int, typer.Option(help="Random seed of the generated delivery.")] = 20180101,
    orchestrate: Annotated[bool, typer.Option(help="Run as a Prefect flow (default) or as plain Python.")] = True,
) -> None:
    """Generate a small synthetic delivery and run the whole evaluation on it."""
    from fixtures.generator import generate as _generate
    from pipeline.pseudonym import DEMO_KEY

    cfg = _config(None)
    delivery = out / "delivery"
    typer.echo(f"generating a {scale.value} synthetic delivery into {delivery} ...")
    _write_delivery(_generate, delivery, scale=scale.value, seed=seed)
    typer.echo("using kokeilu's fixed demo pseudonymisation key (for synthetic data only)")
    _run_and_print(
        kela=delivery / "kela",
        avain=delivery / "avain",
        db=out / "evaluation.duckdb",
        out=out,
        cfg=cfg,
        key=DEMO_KEY,
        orchestrate=orchestrate,
        corrections=delivery / "kela_correction",
    )


def _write_delivery(generate_: Callable[..., dict], out: Path, **options: object) -> dict:
    """Generate a synthetic delivery into ``out``; a directory that cannot be written is one line, exit 2."""
    try:
        return generate_(out, **options)
    except OSError as exc:
        fail(f"cannot write the delivery to {out}: {exc.strerror or exc}")


def _check_reason(reason: str | None) -> None:
    if reason is not None and not reason.strip():
        fail("--allow-shrink needs a reason, e.g. --allow-shrink 'Kela withdrew May 2018, ticket 1234'")


def _run_and_print(*, kela: Path, avain: Path | None, db: Path, out: Path, cfg, key: bytes,  # noqa: ANN001
                   orchestrate: bool, corrections: Path | None = None, task_runner: str = "default",
                   dask_address: str | None = None, processes: int | None = None,
                   allow_shrink: str | None = None) -> None:
    if orchestrate:
        from flows.evaluate import run_evaluate_flow

        summary = run_evaluate_flow(kela=kela, avain=avain, db=db, out=out, config=cfg, key=key,
                                    corrections=corrections, task_runner=task_runner, dask_address=dask_address,
                                    processes=processes, allow_shrink=allow_shrink)
    else:
        from pipeline.evaluation import run_evaluation

        summary = run_evaluation(kela=kela, avain=avain, db=db, out=out, config=cfg, key=key,
                                 corrections=corrections, processes=processes, allow_shrink=allow_shrink)
    from pipeline.evaluation import print_summary

    print_summary(summary)


@app.command()
@one_line_errors
def report(
    db: Annotated[Path, typer.Option("--db", help="Results database (DuckDB).")] = DEFAULT_DB,
    out: Annotated[Path, typer.Option("--out", help="Directory to write the report into.")] = DEFAULT_OUT / "report",
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run to report (default: the latest completed).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Evaluation configuration (TOML).")] = None,
) -> None:
    """Rebuild the HTML report from a results database."""
    cfg = _config(config)
    if not db.exists():
        fail(f"results database {db} does not exist: run `kokeilu run` or `kokeilu demo` first")
    from pipeline.report import build_report

    path = build_report(db, out, run_id=run_id, config=cfg)
    typer.echo(f"report: {path}")


@app.command()
@one_line_errors
def export(
    db: Annotated[Path, typer.Option("--db", help="Results database (DuckDB).")] = DEFAULT_DB,
    out: Annotated[Path, typer.Option("--out", help="New directory for the bundle.")] = DEFAULT_OUT / "export",
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run to export (default: the latest completed).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Evaluation configuration (TOML).")] = None,
) -> None:
    """Write the output-check bundle of a run: its tables and figures, labelled, with counts, rules and a manifest."""
    cfg = _config(config)
    if not db.exists():
        fail(f"results database {db} does not exist: run `kokeilu run` or `kokeilu demo` first")
    from pipeline.export import export_bundle

    bundle = export_bundle(db, out, run_id=run_id, config=cfg)
    withheld = sum(f.get("rows_withheld", 0) for f in bundle.files if f["kind"] == "table")
    typer.echo(f"bundle of run {bundle.run_id}: {len(bundle.files) + 1} files in {out} "
               f"({withheld} withheld rows); manifest {out / 'manifest.json'}")


@app.command()
@one_line_errors
def serve(
    kela: Annotated[Path, typer.Option("--kela", help="Directory where Kela deliveries arrive.")] = Path("deliveries/kela"),
    avain: Annotated[Path | None, typer.Option("--avain", help="Directory where AVAIN deliveries arrive.")] = None,
    db: Annotated[Path, typer.Option("--db", help="Results database (DuckDB).")] = DEFAULT_DB,
    cron: Annotated[str, typer.Option(help="Schedule (cron, Europe/Helsinki).")] = "0 6 20 * *",
) -> None:
    """Register the Prefect deployments with their schedules and serve them (needs PREFECT_API_URL)."""
    from flows.deployments import serve_deployments

    serve_deployments(kela=kela, avain=avain, db=db, cron=cron)


def main() -> None:
    """Entry point that turns stray exceptions into one line (details with KOKEILU_DEBUG=1)."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        typer.echo("kokeilu: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
        from pipeline.errors import KokeiluError

        if isinstance(exc, KokeiluError):  # raised outside a command (the commands map their own)
            typer.echo(f"kokeilu: {exc}", err=True)
            sys.exit(exc.exit_code)
        if os.environ.get("KOKEILU_DEBUG"):
            raise
        typer.echo(f"kokeilu: internal error: {type(exc).__name__}: {exc} (set KOKEILU_DEBUG=1 for details)",
                   err=True)
        sys.exit(3)
