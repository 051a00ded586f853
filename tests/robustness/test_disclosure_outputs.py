"""Planted small cells on a delivery: the same disclosure decisions in the results tables, the report, the
Prefect artifacts and the export bundle.

A copy of the committed sample where one pilot-municipality recipient is granted 99,999 EUR in every pilot
month dominates the euros of the pilot months (the (n, k) rule withholds the cost view); with a threshold of 15
persons, per-municipality rows of small pilot municipalities are withheld by their treated persons although
the regression pools thousands, and their complements and leave-one-out rows follow.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline import db
from pipeline.evaluation import run_evaluation
from pipeline.export import export_bundle
from pipeline.pseudonym import DEMO_KEY, Pseudonymiser
from schemas.config import EvaluationConfig

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
CONFIG = EvaluationConfig(
    outcomes=("amount_eur",), headline_outcomes=("amount_eur",), subgroups=("municipality", "sex"),
    inference={"bootstrap_draws": 99, "randomization_max_assignments": 1, "randomization_draws": 99,
               "subgroup_max_assignments": 1, "pretrend_draws": 19, "placebo_replications": 10,
               "placebo_draws": 99, "sdid_replications": 2},
    disclosure={"min_cell_persons": 15, "dominance_n": 1, "dominance_k": 0.2},
)
PILOT = "837"
EURO = re.compile(r"\d[\d\u202f\u00a0 ]*(\.\d+)?\s?€")
"""A euro amount as the report prints it (``pipeline.report.fmt_eur``: narrow no-break spaces, then €)."""


def test_the_euro_pattern_finds_what_the_report_prints() -> None:
    from pipeline.report import fmt_eur

    for x in (-1_203_705.6, 5_000_000.0, -296.29, 12.0):
        assert EURO.search(f"<td class=\"num\">{fmt_eur(x)}</td>"), fmt_eur(x)


def _dominant_delivery(root: Path) -> Path:
    """The sample with one treated cohort member of Tampere granted 99,999 EUR in every pilot month."""
    delivery = root / "delivery"
    shutil.copytree(SAMPLE, delivery, ignore=shutil.ignore_patterns("truth.json"))
    first = root / "first.duckdb"
    run_evaluation(kela=delivery / "kela", avain=delivery / "avain", db=first, out=root / "first", config=CONFIG,
                   key=DEMO_KEY, corrections=delivery / "kela_correction")
    with db.connect(first, read_only=True) as con:
        treated = {str(k) for (k,) in con.execute(
            "select person_key from panel.cohort where treated and baseline_kuntanumero = ?", [PILOT]).fetchall()}
    keys = Pseudonymiser(DEMO_KEY)
    target = None
    for path in sorted((delivery / "kela").glob("toimeentulotuki_2018*.csv")):
        lines = path.read_text(encoding="utf-8").splitlines()
        who = [h.strip("\ufeff").strip('"') for h in lines[0].split(";")].index("hetu")
        for line in lines[1:]:
            hetu = line.split(";")[who].strip('"')
            if keys.key_of(hetu) in treated:
                target = hetu
                break
        if target:
            break
    assert target is not None
    for path in [*(delivery / "kela").glob("toimeentulotuki_201[89]*.csv"),
                 *(delivery / "kela_correction").glob("*.csv")]:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        header = [h.strip("\ufeff").strip('"') for h in lines[0].rstrip("\r\n").split(";")]
        at, who = header.index("myonnetty_eur"), header.index("hetu")
        out = [lines[0]]
        for line in lines[1:]:
            fields = line.rstrip("\r\n").split(";")
            if fields[who].strip('"') == target:
                fields[at] = '"99999,00"' if fields[at].startswith('"') else "99999,00"
            out.append(";".join(fields) + line[len(line.rstrip("\r\n")):])
        path.write_text("".join(out), encoding="utf-8")
    return delivery


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("planted")
    delivery = _dominant_delivery(root)
    path = root / "e.duckdb"
    summary = run_evaluation(kela=delivery / "kela", avain=delivery / "avain", db=path, out=root / "out",
                             config=CONFIG, key=DEMO_KEY, corrections=delivery / "kela_correction")
    return path, root / "out", summary.run_id


def test_dominance_withholds_the_cost_view_in_every_output(planted, tmp_path: Path) -> None:
    path, out, run_id = planted
    with db.connect(path, read_only=True) as con:
        cost = con.sql("select * from results.cost where run_id = ?", params=[run_id]).pl()
    assert cost.height and cost["largest_share"].min() > CONFIG.disclosure.dominance_k
    assert cost["suppressed"].all() and set(cost["suppression_rule"]) == {"dominance"}
    assert cost["observed_total"].is_null().all() and cost["effect_total"].is_null().all()

    report = (out / "report" / "index.html").read_text(encoding="utf-8")
    section = report[report.index('<section id="cost">'):report.index("</section>", report.index('<section id="cost">'))]
    assert 'class="suppressed"' in section
    assert not EURO.search(section), "a euro sum is shown"

    bundle = export_bundle(path, tmp_path / "bundle", run_id=run_id)
    table = pl.read_csv(tmp_path / "bundle" / "tables" / "cost.csv")
    assert table["suppressed"].all() and table["observed_total"].null_count() == table.height
    entry = next(f for f in bundle.files if f["path"] == "tables/cost.csv")
    assert entry["rules"]["dominance"] == table.height


def test_small_treated_sides_and_their_complements_are_withheld_in_every_output(planted, tmp_path: Path) -> None:
    path, out, run_id = planted
    with db.connect(path, read_only=True) as con:
        est = con.sql("select * from results.did_estimates where run_id = ?", params=[run_id]).pl()
        rob = con.sql("select * from results.robustness where run_id = ?", params=[run_id]).pl()
    municipal = est.filter(pl.col("subgroup").str.starts_with("municipality="))
    primary = municipal.filter(pl.col("suppression_rule") == "primary")
    assert primary.height, "the threshold should withhold a small pilot municipality"
    assert (primary["n_treated_persons"] < 15).all() and (primary["n_persons"] >= 15).all()
    hidden = set(est.filter(pl.col("suppressed"))["subgroup"])
    loo = rob.filter(pl.col("variant").str.starts_with("without="))
    for subgroup in hidden:
        if subgroup.startswith("municipality="):
            code = subgroup.split("=")[1]
            rows = loo.filter(pl.col("variant") == f"without={code}")
            assert rows["suppressed"].all(), f"the headline without {code} is published"

    bundle = tmp_path / "bundle"
    export_bundle(path, bundle, run_id=run_id)
    exported = pl.read_csv(bundle / "tables" / "did_estimates.csv")
    assert set(exported.filter(pl.col("suppressed"))["subgroup"]) == hidden
    report = (out / "report" / "index.html").read_text(encoding="utf-8")
    for subgroup in hidden:
        level = subgroup.split("=")[1]
        rows = re.findall(rf"<tr><td>{re.escape(level)}</td><td>amount_eur</td>.*?</tr>", report, flags=re.DOTALL)
        assert rows and all('class="suppressed"' in r for r in rows), subgroup
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["disclosure"]["min_cell_persons"] == 15


def test_the_headline_artifact_shows_what_the_results_table_holds(evaluated_sample) -> None:
    run = evaluated_sample
    (artifact,) = [a for a in run.artifacts if a["key"] == "headline-effects"]
    rows = artifact["data"] if isinstance(artifact["data"], list) else json.loads(artifact["data"])
    with db.connect(run.db, read_only=True) as con:
        table = {(o, e): (x, s) for o, e, x, s in con.execute(
            "select outcome, estimator, estimate, suppressed from results.did_estimates "
            "where run_id = ? and subgroup = 'all'", [run.run_id]).fetchall()}
    for r in rows:
        estimate, suppressed = table[(r["outcome"], r["estimator"])]
        assert (r["estimate"] is None) == (estimate is None)
        if suppressed:
            assert r["estimate"] is None
