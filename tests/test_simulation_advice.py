"""The committed inference simulation: the advice follows its rule from the file's numbers, and the markdown
page is the script's rendering of the file (the simulation itself is not rerun here)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from pipeline.simulation_advice import HEADLINE_ESTIMATOR, METHOD_ORDER, SIMULATION_JSON, advice, advice_from

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._simulation.render import render  # noqa: E402


@pytest.fixture(scope="module")
def data() -> dict:
    return json.loads((ROOT / SIMULATION_JSON).read_text(encoding="utf-8"))


def _passes(row: dict) -> bool:
    """The rule recomputed from the rates: within 2 sqrt(0.05 * 0.95 / R) of 5 % and 95 %."""
    se0 = math.sqrt(0.05 * 0.95 / row["replications"])
    return (row["size"] is not None and row["coverage"] is not None
            and abs(row["size"] - 0.05) <= 2 * se0 and abs(row["coverage"] - 0.95) <= 2 * se0)


def test_flags_in_the_file_follow_from_its_rates(data: dict) -> None:
    for r in data["results"]:
        se0 = math.sqrt(0.05 * 0.95 / r["replications"])
        if r["size"] is not None:
            assert r["size_within_2mcse"] == (abs(r["size"] - 0.05) <= 2 * se0), r
        if r["coverage"] is not None:
            assert r["coverage_within_2mcse"] == (abs(r["coverage"] - 0.95) <= 2 * se0), r


def test_actual_design_has_the_promised_replications_under_every_dgp(data: dict) -> None:
    dgps = {d["name"] for d in data["dgps"]}
    assert len(dgps) >= 2
    rows = [r for r in data["results"] if r["placement"] == "actual" and r["unit"] == "all"
            and r["estimator"] == HEADLINE_ESTIMATOR]
    assert {r["dgp"] for r in rows} == dgps
    assert all(r["replications"] == data["replications"]["actual"] for r in rows)


def test_advice_is_the_rule_recomputed_from_the_numbers(data: dict) -> None:
    expected = None
    for method in METHOD_ORDER:
        rows = [r for r in data["results"] if r["placement"] == "actual" and r["unit"] == "all"
                and r["estimator"] == HEADLINE_ESTIMATOR and r["method"] == method]
        if len(rows) == len(data["dgps"]) and all(_passes(r) for r in rows):
            expected = method
            break
    got = advice(ROOT / SIMULATION_JSON)
    assert got.method == expected
    assert got == advice_from(data)
    assert got.sentences and (expected is None) == got.sentences[0].startswith("No method")
    if expected is not None:
        assert got.label in got.sentences[0]


def test_markdown_is_the_rendering_of_the_json(data: dict) -> None:
    assert (ROOT / "docs" / "inference_simulation.md").read_text(encoding="utf-8") == render(data)
