"""The evaluate flow end to end on the committed sample, under Prefect's test harness (the session's
``evaluated_sample``); reruns are identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import db
from pipeline.pseudonym import DEMO_KEY
from schemas.config import EvaluationConfig

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
FAST = EvaluationConfig(inference={"bootstrap_draws": 999, "randomization_max_assignments": 10_000,
                                   "randomization_draws": 199, "subgroup_max_assignments": 1_000},
                        subgroups=("municipality", "sex"))
RESULTS = ("did_estimates", "event_study", "pretrend_tests", "inference", "placebo_size")


def _results(path: Path, run_id: str) -> dict[str, list]:
    with db.connect(path, read_only=True) as con:
        return {t: con.execute(f"select * exclude (run_id) from results.{t} where run_id = ? order by all",
                               [run_id]).fetchall() for t in RESULTS}


@pytest.mark.slow
def test_flow_runs_under_the_test_harness(evaluated_sample) -> None:
    run = evaluated_sample
    assert run.headline.height > 0
    assert (run.out / "report" / "index.html").is_file()
    assert {a["key"] for a in run.artifacts} >= {"validation-summary", "headline-effects"}
    with db.connect(run.db, read_only=True) as con:
        status, inputs = con.execute("select status, inputs from meta.runs where run_id = ?",
                                     [run.run_id]).fetchall()[0]
        missing_comments = con.execute(
            "select count(*) from duckdb_columns() where schema_name in "
            "('staging', 'quarantine', 'panel', 'results', 'meta') and comment is null").fetchall()[0][0]
    assert status == "completed"
    assert "toimeentulotuki_201701.csv" in inputs
    assert missing_comments == 0
    # every input's SHA-256 is recorded, from the bytes the loader read
    recorded = json.loads(inputs)
    assert {r["directory"] for r in recorded} == {"kela", "avain", "kela_correction"}
    for r in recorded:
        directory = {"kela": SAMPLE / "kela", "avain": SAMPLE / "avain", "kela_correction": SAMPLE / "kela_correction"}
        assert r["sha256"] == db.sha256_file(directory[r["directory"]] / r["file"]), r["file"]


@pytest.mark.slow
def test_rerun_gives_identical_results(tmp_path: Path) -> None:
    from pipeline.evaluation import run_evaluation

    path = tmp_path / "e.duckdb"
    runs = [run_evaluation(kela=SAMPLE / "kela", avain=SAMPLE / "avain", db=path, out=tmp_path, config=FAST,
                           key=DEMO_KEY, corrections=SAMPLE / "kela_correction").run_id for _ in range(2)]
    first, second = (_results(path, r) for r in runs)
    assert first["did_estimates"]
    assert first == second
