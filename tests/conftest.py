"""Shared fixtures: one generated small delivery, loaded once, for the tests that need real volume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import db
from pipeline.pseudonym import DEMO_KEY
from schemas.config import EvaluationConfig

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "sample"


@pytest.fixture(scope="session")
def config() -> EvaluationConfig:
    return EvaluationConfig()


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
