"""The HTML outputs of a run, rendered in a real browser with no network: what an output checker would see.

The report and the Data Docs of the session's one run of the committed sample (``evaluated_sample``) are
opened in headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright) from ``file://``, with
every request to anything but a local file blocked and counted, and host names resolving nowhere. From
the rendered DOM, :func:`check_page` collects what would make the page unfit to leave a secure
environment or unreadable in one:

* requests that left for another host, references to another host in the DOM (``src``, ``href``,
  ``srcset``, ``data``, CSS ``url()``) and Content-Security-Policy violations;
* local files that failed to load, and images (``img``, ``svg``, ``object``) that did not load or have
  no size;
* identity-code shapes (hetu) and pseudonymised person keys in the page's text and attributes;
* table rows marked suppressed that still show an estimate (a decimal number) or a withheld count;
* elements that overflow the page's width outside a horizontally scrollable container.

A full-page screenshot of each page is kept under ``outputs/browser/``. The checker is shown to find
each kind of fault in small deliberately broken pages, so a clean result means something. Chromium
missing: the tests fail under CI (``CI`` set; ``.ci/run`` installs it) and are skipped otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from pipeline import db

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "outputs" / "browser"
VIEWPORT = {"width": 1280, "height": 900}
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND"]
"""Chromium's flags (``--headless`` and ``--user-data-dir`` come from Playwright's headless persistent context);
no host name resolves, so nothing could leave even past the request blocking."""
HETU = re.compile(r"\d{6}[-+A-FU-Y]\d{3}[0-9A-Y]")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DECIMAL = re.compile(r"\d[.,]\d")
LOCAL_SCHEMES = ("file", "data", "about", "blob")

# --------------------------------------------------------------------------- the browser


@pytest.fixture(scope="session")
def chromium() -> Any:
    """Playwright's ``sync_playwright``, once Chromium and Playwright are known to be there; under CI their
    absence fails the test, elsewhere it skips it. Session-scoped and asked for first, so that a missing
    browser skips before the sample is evaluated."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found (Debian: apt-get install chromium; .ci/run installs it)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            reason = "the playwright package is not installed (pip install -e '.[test]')"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser check cannot run under CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def browser(chromium: Any) -> Iterator[Any]:
    """A headless Chromium context (fresh ``--user-data-dir``), shared by this module's tests."""
    profile = tempfile.mkdtemp(prefix="kokeilu-chromium-")
    with chromium() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=FLAGS, viewport=VIEWPORT,
            service_workers="block")
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


# --------------------------------------------------------------------------- the checker


@dataclass
class PageCheck:
    """What one rendered page shows that it should not."""

    url: str
    blocked: list[str] = field(default_factory=list)  # requests to another host (blocked)
    external_refs: list[str] = field(default_factory=list)  # references to another host in the DOM
    csp_violations: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)  # local files that did not load
    broken_images: list[str] = field(default_factory=list)
    identity_codes: list[str] = field(default_factory=list)
    person_keys: list[str] = field(default_factory=list)
    suppressed_numbers: list[str] = field(default_factory=list)
    overflowing: list[str] = field(default_factory=list)
    images: int = 0  # images (img, svg, object) checked
    text: str = ""
    tables: list[dict[str, Any]] = field(default_factory=list)

    def problems(self) -> dict[str, list[str]]:
        """Every non-empty finding, by kind."""
        kinds = ("blocked", "external_refs", "csp_violations", "failed_loads", "broken_images", "identity_codes",
                 "person_keys", "suppressed_numbers", "overflowing")
        return {k: getattr(self, k) for k in kinds if getattr(self, k)}


DOM_SCRIPT = """
() => {
  const W = document.documentElement.clientWidth;
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const scrollable = el => {
    for (let p = el.parentElement; p && p !== document.documentElement; p = p.parentElement) {
      const s = getComputedStyle(p);
      if (s.overflowX === 'auto' || s.overflowX === 'scroll') return true;
    }
    return false;
  };
  const images = [];
  for (const el of document.querySelectorAll('img, svg, object')) {
    if (el.tagName.toLowerCase() === 'svg' && el.parentElement && el.parentElement.closest('svg')) continue;
    const r = el.getBoundingClientRect();
    const loaded = el.tagName.toLowerCase() === 'img' ? (el.complete && el.naturalWidth > 0) : true;
    images.push({what: name(el) + ' ' + (el.getAttribute('src') || el.getAttribute('data') || '').slice(0, 80),
                 loaded, width: r.width, height: r.height});
  }
  const overflowing = [];
  if (document.documentElement.scrollWidth > W + 1)
    overflowing.push('page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + W);
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if ((r.width === 0 && r.height === 0) || (r.right <= W + 1 && r.left >= -1)) continue;
    if (!scrollable(el)) overflowing.push(name(el) + ' spans ' + Math.round(r.left) + '..' + Math.round(r.right));
  }
  for (const el of document.body.querySelectorAll('*')) {  // text running out of its box
    const s = getComputedStyle(el);
    if (s.overflowX !== 'visible' || el.scrollWidth <= el.clientWidth + 1 || el.clientWidth === 0) continue;
    const right = el.getBoundingClientRect().left + el.scrollWidth;
    if (right > W + 1 && !scrollable(el)) overflowing.push(name(el) + ' content runs to ' + Math.round(right));
  }
  const refs = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of ['src', 'href', 'srcset', 'data', 'poster', 'action', 'background', 'xlink:href']) {
      const v = el.getAttribute(a);
      if (v) for (const part of (a === 'srcset' ? v.split(',').map(s => s.trim().split(/\\s+/)[0]) : [v]))
        refs.push(part);
    }
    const st = el.getAttribute('style');
    if (st) for (const m of st.matchAll(/url\\(\\s*['"]?([^'")]+)/g)) refs.push(m[1]);
  }
  for (const sheet of document.styleSheets) {
    let rules = [];
    try { rules = Array.from(sheet.cssRules); } catch (e) { if (sheet.href) refs.push(sheet.href); }
    for (const rule of rules) {
      for (const m of rule.cssText.matchAll(/url\\(\\s*['"]?([^'")]+)/g)) refs.push(m[1]);
      if (rule.href) refs.push(rule.href);
    }
  }
  const attrs = [];
  for (const el of document.querySelectorAll('*'))
    for (const a of el.attributes)
      if (!a.value.startsWith('data:')) attrs.push(a.value);
  const tables = [];
  for (const t of document.querySelectorAll('table')) {
    const heads = Array.from(t.querySelectorAll('th')).map(th => th.innerText.trim());
    const rows = Array.from(t.querySelectorAll('tr')).filter(tr => tr.querySelector('td')).map(tr => {
      let col = 0;
      const spans = Array.from(tr.children).map(td => {
        const at = col; col += td.colSpan || 1;
        return {col: at, withheld: td.classList.contains('suppressed')};
      });
      return {cells: Array.from(tr.children).map(td => td.innerText.trim()), spans,
              suppressed: !!tr.querySelector('td.suppressed')};
    });
    tables.push({id: t.id, heads, rows});
  }
  return {images, overflowing, refs, tables, text: document.documentElement.textContent,
          visible: document.body.innerText, attrs: attrs.join('\\n'), csp: window.__csp || []};
}
"""

CSP_LISTENER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def _is_local(url: str) -> bool:
    return urlparse(url).scheme in LOCAL_SCHEMES


def _external(ref: str) -> bool:
    """A reference that names another host (``http:``, ``https:``, ``//host``, ``ws:``, ``ftp:``...)."""
    ref = ref.strip()
    if ref.startswith("//"):
        return True
    scheme = urlparse(ref).scheme.lower()
    return bool(scheme) and scheme not in (*LOCAL_SCHEMES, "mailto", "javascript") and len(scheme) > 1


def check_page(context: Any, url: str, *, person_keys: frozenset[str] = frozenset(),
               withheld: frozenset[int] = frozenset(), screenshot: Path | None = None) -> PageCheck:
    """Open ``url`` in ``context`` with every non-local request blocked; what the rendered page shows.

    ``person_keys`` are the pseudonymised keys that must not appear; ``withheld`` the numbers the
    disclosure control withheld (persons and observations of suppressed rows), which must not appear in
    a row marked suppressed.
    """
    found = PageCheck(url)

    def route(r: Any) -> None:
        if _is_local(r.request.url):
            r.continue_()
        else:
            found.blocked.append(r.request.url)
            r.abort("blockedbyclient")

    page = context.new_page()
    try:
        page.route("**/*", route)
        page.add_init_script(CSP_LISTENER)
        page.on("requestfailed", lambda req: found.failed_loads.append(f"{req.url} ({req.failure})")
                if _is_local(req.url) else None)
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        dom = page.evaluate(DOM_SCRIPT)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        page.close()
    found.external_refs = sorted({r for r in dom["refs"] if _external(r)})
    found.csp_violations = list(dom["csp"])
    found.broken_images = [f"{i['what']} (loaded={i['loaded']}, {i['width']:.0f}x{i['height']:.0f})"
                           for i in dom["images"] if not i["loaded"] or i["width"] <= 0 or i["height"] <= 0]
    found.images = len(dom["images"])
    found.overflowing = dom["overflowing"]
    text = dom["text"] + "\n" + dom["visible"] + "\n" + dom["attrs"]
    found.identity_codes = sorted(set(HETU.findall(text)))
    found.person_keys = sorted({k for k in UUID.findall(text.lower()) if k in person_keys})
    found.suppressed_numbers = _suppressed_numbers(dom["tables"], withheld)
    found.text, found.tables = dom["visible"], dom["tables"]
    return found


LABEL_HEADERS = frozenset({"outcome", "estimator", "subgroup", "method", "assumes", "variant", "left out",
                           "restriction", "bound", "schedule change", "treated / all clusters"})
"""Columns that name a row (or count clusters, which are not withheld): their numbers are labels."""


def _suppressed_numbers(tables: list[dict[str, Any]], withheld: frozenset[int]) -> list[str]:
    """Rows marked suppressed that show an estimate (a decimal number) or a withheld count outside their labels
    (the first column, the columns of :data:`LABEL_HEADERS`); the withheld cell's text (which names the
    threshold, never under it) is checked too."""
    out = []
    for table in tables:
        heads = [h.lower() for h in table["heads"]]
        for row in table["rows"]:
            if not row["suppressed"]:
                continue
            shown = [text for text, span in zip(row["cells"], row["spans"])
                     if span["col"] > 0 and (span["withheld"] or span["col"] >= len(heads)
                                             or heads[span["col"]] not in LABEL_HEADERS)]
            counts = {int(c) for c in (re.sub(r"[\s\u202f\u00a0,]", "", cell) for cell in shown) if c.isdigit()}
            if any(DECIMAL.search(c) for c in shown) or counts & withheld:
                out.append(" | ".join(row["cells"]))
    return out


# --------------------------------------------------------------------------- the run's pages


@dataclass(frozen=True)
class Secrets:
    """What the run's pages must not show: its person keys, and the numbers withheld by disclosure control."""

    person_keys: frozenset[str]
    withheld: frozenset[int]
    suppressed_rows: list[tuple[str, str, str]]


@pytest.fixture(scope="module")
def secrets(evaluated_sample) -> Secrets:
    with db.connect(evaluated_sample.db, read_only=True) as con:
        keys = {str(k).lower() for (k,) in con.execute(
            "select distinct person_key::varchar from staging.kela_income_support").fetchall()}
        rows = con.execute(
            "select outcome, estimator, subgroup, n_persons, n_obs, estimate from results.did_estimates "
            "where run_id = ? and suppressed", [evaluated_sample.run_id]).fetchall()
        others = con.execute(  # the person counts of the other tables' suppressed rows
            "select n_persons from results.robustness where run_id = ? and suppressed union all "
            "select treated_persons from results.cost where run_id = ? and suppressed",
            [evaluated_sample.run_id] * 2).fetchall()
    assert keys, "the sample's staging table holds no person keys"
    assert all(est is None for *_, est in rows), "a suppressed row keeps its estimate in the database"
    withheld = {int(n) for _, _, _, p, o, _ in rows for n in (p, o) if n is not None}
    withheld |= {int(n) for (n,) in others if n is not None}
    return Secrets(frozenset(keys), frozenset(withheld), [(o, e, s) for o, e, s, *_ in rows])


def _assert_clean(found: PageCheck) -> None:
    assert found.problems() == {}, f"{found.url}: {found.problems()}"


def unmarked_suppressed(found: PageCheck, suppressed: list[tuple[str, str, str]]) -> list[str]:
    """Estimates the database holds as suppressed that the page leaves out or shows in a row not marked
    suppressed. A row is found by its outcome and estimator and its subgroup (a cell, or its level in the
    first cell, as the report's subgroup tables print it; the headline rows for ``all``)."""
    problems = []
    for outcome, estimator, subgroup in suppressed:
        level = subgroup.split("=", 1)[-1]
        shown = [r for t in found.tables for r in t["rows"]
                 if outcome in r["cells"] and estimator in r["cells"]
                 and (subgroup in r["cells"] or r["cells"][0] == level
                      or (subgroup == "all" and r["cells"][:2] == [outcome, estimator]))]
        if not shown:
            problems.append(f"{outcome}/{estimator}/{subgroup} not in the page")
        problems += [f"{outcome}/{estimator}/{subgroup} unmarked: {' | '.join(r['cells'])}"
                     for r in shown if not r["suppressed"]]
    return problems


@pytest.mark.slow
def test_report_renders_offline_and_discloses_nothing(chromium, browser, evaluated_sample, secrets: Secrets) -> None:
    report = evaluated_sample.out / "report" / "index.html"
    found = check_page(browser, report.as_uri(), person_keys=secrets.person_keys, withheld=secrets.withheld,
                       screenshot=SHOTS / "report.png")
    _assert_clean(found)
    assert "Kokeilu: evaluation of the pilot" in found.text
    assert found.images > 0, "the report should hold its plots"
    assert secrets.suppressed_rows, "the sample should give suppressed estimates"
    assert unmarked_suppressed(found, secrets.suppressed_rows) == []


@pytest.mark.slow
def test_the_checker_reports_the_report_with_its_withheld_cells_filled(chromium, browser, evaluated_sample,
                                                                       secrets: Secrets, tmp_path: Path) -> None:
    """The report with every withheld cell showing numbers, marked or not, fails the checks."""
    page = (evaluated_sample.out / "report" / "index.html").read_text(encoding="utf-8")
    withheld = re.compile(r'<td class="suppressed"[^>]*>.*?</td>', re.S)
    n = next(iter(secrets.withheld))
    marked, changed = withheld.subn(f'<td class="suppressed" colspan="8">0.1234 ({n} persons)</td>', page)
    unmarked = withheld.sub('<td class="num">0.1234</td>', page)
    assert changed > 0
    (tmp_path / "marked.html").write_text(marked, encoding="utf-8")
    (tmp_path / "unmarked.html").write_text(unmarked, encoding="utf-8")
    found = check_page(browser, (tmp_path / "marked.html").as_uri(), withheld=secrets.withheld)
    assert len(found.suppressed_numbers) == changed, found.suppressed_numbers
    found = check_page(browser, (tmp_path / "unmarked.html").as_uri(), withheld=secrets.withheld)
    assert len(unmarked_suppressed(found, secrets.suppressed_rows)) >= len(secrets.suppressed_rows)


@pytest.mark.slow
def test_data_docs_render_offline_and_list_the_runs_results(chromium, browser, evaluated_sample, secrets: Secrets) -> None:
    docs = evaluated_sample.out / "data_docs"
    index = check_page(browser, (docs / "index.html").as_uri(), person_keys=secrets.person_keys,
                       withheld=secrets.withheld, screenshot=SHOTS / "data_docs_index.png")
    _assert_clean(index)
    with db.connect(evaluated_sample.db, read_only=True) as con:
        targets = {t for (t,) in con.execute(
            "select distinct target from meta.validation_results where run_id = ? and source = 'expectation'",
            [evaluated_sample.run_id]).fetchall()}
    assert targets, "the run recorded no expectation results"
    (listing,) = [t for t in index.tables if t["id"] == "validation-results"]
    listed = {(r["cells"][0], r["cells"][1], r["cells"][2]) for r in listing["rows"]}
    run = evaluated_sample.run_id
    assert {(run, t.replace(".", "__"), t) for t in targets} <= listed, listed
    assert {run_id for run_id, _, _ in listed} == {run}
    suites = sorted(docs.glob("suites/*.html"))
    assert {p.stem for p in suites} == {s for _, s, _ in listed}
    for page in suites:
        found = check_page(browser, page.as_uri(), person_keys=secrets.person_keys, withheld=secrets.withheld,
                           screenshot=SHOTS / f"data_docs_{page.stem}.png")
        _assert_clean(found)
        assert run in found.text and "expect_" in found.text
    assert sorted(p.name for p in docs.iterdir()) == ["index.html", "suites"]


# --------------------------------------------------------------------------- the checker finds faults


CLEAN = """<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>
<p>Estimates</p><div style="overflow-x:auto"><table><tr><th>Outcome</th><th>Estimator</th><th>Estimate</th></tr>
<tr><td>received</td><td>twfe</td><td class="num">0.0123</td></tr>
<tr><td>amount_eur</td><td>twfe</td><td class="suppressed">suppressed (&lt; 15 persons)</td></tr></table></div>
<div style="overflow-x:auto"><table><tr><th>kotitaloustyyppi</th><th>Outcome</th><th>Estimator</th><th>Estimate</th>
<th>Persons</th><th>Treated / all clusters</th></tr><tr><td>12</td><td>received</td><td>twfe</td>
<td class="suppressed" colspan="2">suppressed (&lt; 15 persons)</td><td class="num">2 / 8</td></tr></table></div>
<img alt="plot" src="data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSI0MCIgaGVpZ2h0PSIyMCI+PHJlY3Qgd2lkdGg9IjQwIiBoZWlnaHQ9IjIwIiBmaWxsPSIjMDA3Ii8+PC9zdmc+">
<svg width="30" height="10"><rect width="30" height="10"/></svg>
{extra}</body></html>"""
"""A small page that passes every check (a row label equal to a withheld count, the threshold in the withheld
cell and the cluster count are not findings); each broken page adds one fault to it."""

KEY = "0c6f3a52-8d1e-4b6a-9f0e-2a7d5c1b3e94"
BROKEN = {
    "missing image": ('<img alt="x" src="missing.png">', {"broken_images", "failed_loads"}),
    "script from a CDN": ('<script src="https://cdn.example.org/x.js"></script>', {"blocked", "external_refs"}),
    "stylesheet from a CDN": ('<link rel="stylesheet" href="https://cdn.example.org/x.css">',
                              {"blocked", "external_refs"}),
    "image from another host": ('<img alt="logo" src="http://assets.example.org/logo.png">',
                                {"blocked", "external_refs", "broken_images"}),
    "identity code": ("<p>Henkilö 010190-900P</p>", {"identity_codes"}),
    "person key": (f'<p title="{KEY}">a row</p>', {"person_keys"}),
    "estimate in a suppressed row": (
        '<table><tr><td>received</td><td>twfe</td><td class="suppressed">suppressed</td>'
        '<td class="num">0.0311</td></tr></table>', {"suppressed_numbers"}),
    "withheld count in a suppressed row": (
        '<table><tr><td>received</td><td>twfe</td><td class="suppressed">suppressed</td>'
        '<td class="num">12</td></tr></table>', {"suppressed_numbers"}),
    "zero-size object": ('<object data="empty.svg" type="image/svg+xml" width="0" height="0"></object>',
                         {"broken_images", "failed_loads"}),
    "wide element": ('<div style="width:3000px">wide</div>', {"overflowing"}),
    "text running out of its box": (f"<h1>{'suite_' * 300}</h1>", {"overflowing"}),
}


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    (tmp_path / "clean.html").write_text(CLEAN.format(extra=""), encoding="utf-8")
    for i, (extra, _) in enumerate(BROKEN.values()):
        (tmp_path / f"broken{i}.html").write_text(CLEAN.format(extra=extra), encoding="utf-8")
    return tmp_path


def test_the_clean_page_passes(browser, pages: Path) -> None:
    _assert_clean(check_page(browser, (pages / "clean.html").as_uri(), person_keys=frozenset({KEY}),
                             withheld=frozenset({12})))


@pytest.mark.parametrize(("fault", "i"), [(name, i) for i, name in enumerate(BROKEN)])
def test_the_checker_reports_a_broken_page(browser, pages: Path, fault: str, i: int) -> None:
    found = check_page(browser, (pages / f"broken{i}.html").as_uri(), person_keys=frozenset({KEY}),
                       withheld=frozenset({12}))
    assert set(found.problems()) == BROKEN[fault][1], found.problems()


def test_a_content_security_policy_violation_is_reported(browser, tmp_path: Path) -> None:
    """A page whose policy stops an external load makes no request, but the reference and the violation show."""
    page = tmp_path / "csp.html"
    page.write_text(CLEAN.format(extra="").replace(
        "<title>", """<meta http-equiv="Content-Security-Policy" content="default-src 'none'"><title>""").replace(
        "</body>", '<script src="https://cdn.example.org/x.js"></script></body>'), encoding="utf-8")
    found = check_page(browser, page.as_uri())
    assert found.blocked == [] and found.external_refs == ["https://cdn.example.org/x.js"]
    assert any("cdn.example.org" in v for v in found.csp_violations), found.csp_violations
