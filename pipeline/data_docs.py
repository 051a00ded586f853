"""The Data Docs of a run: the expectation suites' results as static pages that need no network.

A run's expectation suites (:mod:`pipeline.quality`) are published here as plain
HTML, one ``index.html`` and one page per suite under ``suites/``, written by
:func:`write_site`. Great Expectations' own Data Docs are not published: they
load Bootstrap, jQuery, Font Awesome and their table scripts from public CDNs
(and a logo from a public bucket, with the data context's id in its address),
so offline, as in a secure remote-access environment, their index lists no
validation result at all and every page is unstyled; and a page that calls
out to public hosts is a finding for an output checker.

What the pages hold, and what they never hold
---------------------------------------------
* The run id, and per suite: the table it speaks of, where it ran (Great
  Expectations on a frame, or DuckDB counts for a table above the frame limit),
  and per expectation what it asserts, whether it passed, the rows (or months)
  examined and how many were unexpected.
* Only counts and the checks' own definitions: never a value read from the
  data. Great Expectations' examples of unexpected values (for a duplicated key,
  pseudonymised person keys) stay inside, in ``meta.validation_results``.
* A count of unexpected rows between 1 and the disclosure threshold is printed
  as ``< threshold``, as the report prints it.
* Styles are inline; every page carries a Content-Security-Policy that allows
  no load from anywhere (``default-src 'none'``), so even a reference that
  slipped into a page would not be fetched.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from pipeline.report import DEFAULT_MIN_CELL_PERSONS, fmt_count

TEMPLATE_DIR = Path(__file__).parent / "templates"
SUITES_DIR = "suites"
SITE_ENTRIES = ("index.html", SUITES_DIR, "expectations", "validations", "static")
"""What a Data Docs site in ``docs_dir`` consists of (the last three: Great Expectations' own site, written
by earlier versions); only these are replaced."""


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation of a suite as the pages show it."""

    check_name: str
    assertion: str
    passed: bool
    observed: int | None
    unexpected: int | None
    error: bool = False


@dataclass(frozen=True)
class SuiteResult:
    """One expectation suite of a run: the table it checks, where it ran, its expectations."""

    name: str
    target: str
    unit: str
    engine: str
    expectations: tuple[ExpectationResult, ...]

    @property
    def failed(self) -> int:
        """Expectations that did not pass."""
        return sum(not e.passed for e in self.expectations)

    @property
    def page(self) -> str:
        """The suite's page, relative to the site's ``index.html``."""
        return f"{SUITES_DIR}/{self.name}.html"


def write_site(docs_dir: Path, *, run_id: str, suites: Sequence[SuiteResult],
               other_checks: Sequence[tuple[str, int, int]] = (),
               threshold: int = DEFAULT_MIN_CELL_PERSONS) -> Path:
    """Write the Data Docs of run ``run_id`` into ``docs_dir``, replacing an older site there; its ``index.html``.

    Parameters
    ----------
    docs_dir
        Folder of the site (created). Only the entries of :data:`SITE_ENTRIES` are replaced.
    run_id
        The run the results belong to; printed on every page.
    suites
        The run's expectation suites; none gives an index that says so.
    other_checks
        ``(source, checks, failed)`` of the run's other recorded checks (row contracts, volume guards),
        listed on the index for completeness.
    threshold
        Disclosure threshold: unexpected counts from 1 to ``threshold - 1`` are printed as ``< threshold``.
    """
    docs_dir = Path(docs_dir)
    _clear(docs_dir)
    (docs_dir / SUITES_DIR).mkdir(parents=True)
    env = _environment(threshold)
    written = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    common = {"run_id": run_id, "written": written, "threshold": threshold}
    for suite in suites:
        page = env.get_template("data_docs_suite.html.j2").render(suite=suite, root="../", **common)
        (docs_dir / suite.page).write_text(page, encoding="utf-8")
    failures = [(s, e) for s in suites for e in s.expectations if not e.passed]
    index = env.get_template("data_docs_index.html.j2").render(
        suites=list(suites), failures=failures, other_checks=list(other_checks), root="", **common)
    (docs_dir / "index.html").write_text(index, encoding="utf-8")
    return docs_dir / "index.html"


def _environment(threshold: int) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["count"] = lambda n: fmt_count(n, threshold)
    env.filters["share"] = lambda e: _share(e, threshold)
    return env


def _share(e: ExpectationResult, threshold: int) -> str:
    """Unexpected as a percentage of examined; a dash when either is unknown, or when the count is withheld
    (the percentage would give it away)."""
    if not e.observed or e.unexpected is None or 0 < e.unexpected < threshold:
        return "–"
    return f"{100 * e.unexpected / e.observed:.2f}\u202f%"


def _clear(docs_dir: Path) -> None:
    """Remove an older site from ``docs_dir`` (the entries of :data:`SITE_ENTRIES`, nothing else)."""
    for entry in SITE_ENTRIES:
        old = docs_dir / entry
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
