"""The Data Docs pages: every result listed, nothing loaded from anywhere, small counts withheld."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.data_docs import ExpectationResult, SuiteResult, write_site

SUITES = [
    SuiteResult("staging__kela_income_support", "staging.kela_income_support", "rows",
                "Great Expectations (pandas frame)", (
                    ExpectationResult("expect_compound_columns_to_be_unique(person_key,month)",
                                      "(person_key, month) unique", False, 361, 2),
                    ExpectationResult("expect_column_values_to_be_in_set(sex)", "sex in {M, F}", True, 361, 0),
                    ExpectationResult("expect_column_values_to_be_between(myonnetty_eur)",
                                      "myonnetty_eur between 0 and 100000", False, 361, 40),
                )),
    SuiteResult("staging__avain_assessments", "staging.avain_assessments", "rows",
                "DuckDB counts (table above the frame limit)", (
                    ExpectationResult("expect_column_values_to_not_be_null(person_key)", "person_key not null",
                                      False, None, None, error=True),
                )),
]
REFERENCE = re.compile(r'\b(?:src|href|data|action|srcset)\s*=\s*"([^"]*)"', re.I)


def _row(page: str, check: str) -> str:
    (row,) = [r for r in re.findall(r"<tr[^>]*>.*?</tr>", page, re.S) if check in r]
    return row


def test_index_lists_every_suite_of_the_run_and_links_its_page(tmp_path: Path) -> None:
    index = write_site(tmp_path, run_id="run-7", suites=SUITES, other_checks=[("contract", 10, 1)])
    page = index.read_text(encoding="utf-8")
    listing = page.split('id="failed-expectations"')[0]
    assert index == tmp_path / "index.html"
    for suite in SUITES:
        row = _row(listing, f">{suite.name}<")
        assert "run-7" in row and suite.target in row and f'href="suites/{suite.name}.html"' in row
        assert (tmp_path / "suites" / f"{suite.name}.html").is_file()
        assert "run-7" in (tmp_path / "suites" / f"{suite.name}.html").read_text(encoding="utf-8")
    assert ">failed<" in _row(listing, ">staging__kela_income_support<")
    assert "expect_column_values_to_be_between(myonnetty_eur)" in page  # listed among the failed expectations
    assert ">contract<" in page


def test_pages_reference_nothing_outside_the_site_and_forbid_loading(tmp_path: Path) -> None:
    write_site(tmp_path, run_id="r", suites=SUITES)
    pages = sorted(tmp_path.rglob("*.html"))
    assert len(pages) == 1 + len(SUITES)
    for path in pages:
        page = path.read_text(encoding="utf-8")
        assert "default-src 'none'" in page, path
        assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
        for ref in REFERENCE.findall(page):
            assert "//" not in ref and ":" not in ref, (path, ref)
            assert (path.parent / ref).resolve().is_file(), (path, ref)


def test_small_unexpected_counts_and_their_shares_are_withheld(tmp_path: Path) -> None:
    write_site(tmp_path, run_id="r", suites=SUITES, threshold=5)
    page = (tmp_path / "suites" / "staging__kela_income_support.html").read_text(encoding="utf-8")
    small = _row(page, "(person_key,month)")
    assert "&lt; 5" in small and ">2<" not in small and "0.55" not in small
    large = _row(page, "(myonnetty_eur)")
    assert ">40<" in large and "11.08" in large
    error = _row((tmp_path / "suites" / "staging__avain_assessments.html").read_text(encoding="utf-8"),
                 "not_be_null(person_key)")
    assert ">error<" in error


def test_an_older_site_is_replaced_and_nothing_else_is_touched(tmp_path: Path) -> None:
    for old in ("static/styles", "expectations", "validations/x", "suites"):
        (tmp_path / old).mkdir(parents=True)
    (tmp_path / "static" / "styles" / "data_docs_default_styles.css").write_text("x")
    (tmp_path / "suites" / "gone.html").write_text("x")
    (tmp_path / "notes.txt").write_text("kept")
    write_site(tmp_path, run_id="r", suites=SUITES[:1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html", "notes.txt", "suites"]
    assert [p.name for p in (tmp_path / "suites").iterdir()] == ["staging__kela_income_support.html"]


def test_no_suites_gives_an_index_that_says_so(tmp_path: Path) -> None:
    page = write_site(tmp_path, run_id="r", suites=[]).read_text(encoding="utf-8")
    assert "No expectation suites were run" in page
