"""Shared fixtures: one generated small delivery, loaded once, for the tests that need real volume; the
committed sample evaluated once by the Prefect flow, for the flow and privacy tests."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline import db
from pipeline.pseudonym import DEMO_KEY
from schemas.config import EvaluationConfig

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "sample"

PEERS = ("pyfixest", "wildboottest", "diff_diff", "fereg", "statsmodels", "playwright")
"""Test-only peers the estimators are held to (the ``test`` extras): a missing one is a broken install."""


def _import_or_fail(modname: str, minversion: str | None = None, reason: str | None = None, **_: Any) -> Any:
    """``pytest.importorskip`` under CI: a missing test dependency fails the test instead of skipping it."""
    import importlib

    try:
        return importlib.import_module(modname)
    except ImportError as exc:
        pytest.fail(f"test dependency {modname} is missing ({exc}): `make test` installs the test extras",
                    pytrace=False)


if os.environ.get("CI"):
    pytest.importorskip = _import_or_fail  # type: ignore[assignment]


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""Public example data with published results, beside the checkout (never copied into the repository)."""


@pytest.fixture(scope="session")
def shared_data() -> Any:
    """``shared_data(name)``: the path of a file of the shared reference data; a missing file fails under CI and
    skips, with the reason, elsewhere."""

    def path(name: str) -> Path:
        found = SHARED_DATA / name
        if not found.is_file():
            reason = f"{found} is missing: the shared reference data sits beside the checkout"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)
        return found

    return path


@pytest.fixture(scope="session")
def test_peers() -> tuple[str, ...]:
    """The test-only peers (``PEERS``)."""
    return PEERS


@pytest.fixture(scope="session")
def config() -> EvaluationConfig:
    return EvaluationConfig()


@pytest.fixture(scope="session")
def cheap_config() -> EvaluationConfig:
    """Every kind of estimation unit (monthly, yearly, AVAIN) and every results table (amount_eur as headline
    brings placebo, robustness and cost), with the fewest draws the configuration allows."""
    return EvaluationConfig(
        inference={"bootstrap_draws": 99, "randomization_max_assignments": 1, "randomization_draws": 99,
                   "subgroup_max_assignments": 1, "pretrend_draws": 19, "placebo_replications": 10,
                   "placebo_draws": 99, "sdid_replications": 2},
        outcomes=("amount_eur", "reduced_basic_amount", "long_term_receipt", "avain_situation", "avain_goal_achieved"),
        headline_outcomes=("amount_eur",), subgroups=("municipality", "sex"),
    )


@pytest.fixture(scope="session")
def small_delivery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from fixtures.generator import generate

    out = tmp_path_factory.mktemp("small")
    truth = generate(out, scale="small", seed=11)
    return out, truth


@pytest.fixture(scope="session")
def loaded_small(small_delivery, tmp_path_factory, config) -> tuple[Path, dict, dict]:
    """The small delivery loaded (with its correction) and its panels built."""
    from pipeline.load import load_delivery
    from pipeline.panels import build_panels

    out, truth = small_delivery
    path = tmp_path_factory.mktemp("db") / "evaluation.duckdb"
    with db.connect(path) as con:
        db.ensure_result_tables(con)
        first = load_delivery(con, kela_dir=out / "kela", avain_dir=out / "avain", key=DEMO_KEY, config=config,
                              run_id="test-load")
        load_delivery(con, kela_dir=out / "kela_correction", avain_dir=None, key=DEMO_KEY, config=config,
                      run_id="test-load")
        build_panels(con, config)
    return path, truth, first.totals()


def read_truth(directory: Path) -> dict:
    return json.loads((directory / "truth.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class EvaluatedSample:
    """The committed sample evaluated once by the evaluate flow under Prefect's test harness, and what it left."""

    run_id: str
    db: Path
    out: Path
    config: EvaluationConfig
    key: bytes
    headline: pl.DataFrame
    artifacts: list[dict[str, Any]]
    flow_parameters: list[dict[str, Any]]
    api_logs: list[str]
    log_lines: list[str]


PUBLISHED = EvaluationConfig(
    inference={"bootstrap_draws": 999, "randomization_max_assignments": 10_000, "randomization_draws": 199,
               "subgroup_max_assignments": 1_000, "pretrend_draws": 99, "sdid_replications": 20},
    subgroups=("kotitaloustyyppi",), disclosure={"min_cell_persons": 15},
)
"""Cheap inference, and a threshold that splits the sample's cells: 2 of 28 municipalities and 4 of 5
household types rest on 15 persons or more, so both suppressed and published cells occur."""


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's test harness (a temporary API and database), started once per session: it costs about 20 s."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def evaluated_sample(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> EvaluatedSample:
    """Run the flow once per session with a random key; keep logs and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    from flows.evaluate import KEY_ENV, run_evaluate_flow

    out = tmp_path_factory.mktemp("evaluated")
    key = secrets.token_hex(32).encode("ascii")
    saved_key = os.environ.get(KEY_ENV)
    handler = _Lines()
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        summary = run_evaluate_flow(kela=SAMPLE / "kela", avain=SAMPLE / "avain", db=out / "e.duckdb", out=out,
                                    config=PUBLISHED, key=key, corrections=SAMPLE / "kela_correction")
        APILogHandler().flush()
        with get_client(sync_client=True) as client:  # of every flow run of the session's harness so far
            artifacts = [{"key": a.key, "type": a.type, "description": a.description, "data": a.data}
                         for a in client.read_artifacts()]
            parameters = [r.parameters for r in client.read_flow_runs()]
            api_logs = [log.message for log in client.read_logs()]
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        if saved_key is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = saved_key
    return EvaluatedSample(run_id=summary.run_id, db=out / "e.duckdb", out=out, config=PUBLISHED, key=key,
                           headline=summary.headline, artifacts=artifacts, flow_parameters=parameters,
                           api_logs=api_logs, log_lines=handler.lines)
