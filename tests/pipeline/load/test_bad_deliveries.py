"""Every case of the committed bad-delivery corpus gives its expected exit code and row accounting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.load import validate_delivery

CASES = sorted((Path(__file__).resolve().parents[3] / "fixtures" / "bad_deliveries" / "cases").iterdir())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path, config) -> None:
    expect = json.loads((case / "expect.json").read_text())
    report = validate_delivery(case, config=config)
    assert report.exit_code == expect["exit_code"]
    if "file_rule" in expect:
        assert [f.file_rule for f in report.files] == [expect["file_rule"]]
        assert report.files[0].detail and "\n" not in report.files[0].detail
    else:
        totals = report.totals()
        assert totals["rows_in"] == expect["rows_in"]
        assert totals["rows_in"] == totals["rows_valid"] + totals["rows_quarantined"]
        assert totals["quarantined_by_rule"] == expect["quarantined"]


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
