"""The output-check bundle: what leaves a secure environment, labelled, with its counts and rules.

Nothing leaves Statistics Finland's FIONA or a Findata environment without an output
check. ``kokeilu export --db PATH --out DIR`` writes, for one run, everything meant to
leave, in the form an output checker asks for:

* ``tables/<table>.csv``: each published results table of the run, withheld rows
  with their numbers empty (``suppressed`` true, ``suppression_rule`` naming the rule);
* ``checks/<table>.csv``: for each table, the underlying counts of every cell (persons,
  treated persons, municipalities) and the rule outcome, beside the thresholds in force;
* ``figures/figure_NN.svg``: every figure of the report, labelled by its caption;
* ``report.html``: the report of the run (self-contained, no request to any host);
* ``manifest.json``: every file with its label, what it shows, its rows and withheld
  rows, the rules applied and its SHA-256.

The bundle holds at most :data:`MAX_FILES` files. Before anything is written, every
file's text is screened: an identity code or a pseudonymised key (a UUID) anywhere
refuses the whole export (:class:`ExportRefused`), and so does a number in a withheld row.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import db as _db
from pipeline.disclosure import RULES
from pipeline.errors import KokeiluError

MAX_FILES = 50
"""At most this many files in a bundle (an output checker reads every one)."""

TABLES: dict[str, str] = {
    "did_estimates": "Difference-in-differences estimates by outcome, estimator and subgroup",
    "event_study": "Event-study estimates by event time",
    "pretrend_tests": "Joint tests of the event-study leads",
    "inference": "Every p-value and interval of every inference method",
    "placebo_size": "Rejection rates of each test in fake pilots among comparison municipalities",
    "robustness": "Robustness analyses: leave-one-out, anticipation, sensitivity sets",
    "cost": "The effect on euros granted, per treated cohort member and in total",
    "balance": "Pilot and comparison cohorts at baseline",
}
"""The results tables meant to leave the environment, with their labels."""

COUNT_COLUMNS = ("n_obs", "n_persons", "n_treated_persons", "n_clusters", "n_treated_clusters", "treated_persons",
                 "pilot_person_months", "pilot_persons", "comparison_persons", "largest_share")
"""Columns that count what a cell rests on (shown to the checker in ``checks/``)."""

HETU = re.compile(r"\b\d{6}[-+A-FU-Y]\d{3}[0-9A-Y]\b")
UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
FIGURE = re.compile(r'<figure[^>]*>\s*<img[^>]*src="data:image/svg\+xml;base64,([^"]+)"[^>]*>\s*'
                    r"<figcaption>(.*?)</figcaption>", re.S)


class ExportRefused(KokeiluError):
    """The bundle would carry an identity code, a pseudonymised key or a withheld number: nothing is written."""

    exit_code = 1


@dataclass
class Bundle:
    """What an export wrote: the run, the directory and the manifest's entries."""

    run_id: str
    out: Path
    files: list[dict[str, Any]] = field(default_factory=list)


def export_bundle(db: Path, out: Path, *, run_id: str | None = None, config: Any = None) -> Bundle:
    """Write the output-check bundle of run ``run_id`` (default: the latest completed) into ``out``."""
    from pipeline.report import build_report

    with _db.connect(Path(db), read_only=True) as con:
        run_id, config_json = _run(con, run_id)
        thresholds = _thresholds(config_json, config)
        tables = {name: _table(con, name, run_id) for name in TABLES}
    staged: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for name, frame in tables.items():
        if frame is None or frame.height == 0:
            continue
        _refuse_withheld_numbers(name, frame)
        withheld = int(frame["suppressed"].fill_null(False).sum()) if "suppressed" in frame.columns else 0
        published = frame.drop([c for c in ("run_id",) if c in frame.columns])
        staged[f"tables/{name}.csv"] = (_csv(published), {
            "label": TABLES[name], "kind": "table", "source": f"results.{name}", "rows": frame.height,
            "rows_withheld": withheld, "rules": _rules_applied(frame)})
        staged[f"checks/{name}.csv"] = (_csv(_counts(frame)), {
            "label": f"Counts behind every cell of results.{name}, and the disclosure rule that held each row",
            "kind": "counts", "source": f"results.{name}", "rows": frame.height, "rows_withheld": withheld,
            "rules": _rules_applied(frame)})
    with tempfile.TemporaryDirectory(prefix="kokeilu-export-") as tmp:
        report = build_report(db, Path(tmp), run_id=run_id, config=config).read_text(encoding="utf-8")
    staged["report.html"] = (report.encode("utf-8"), {
        "label": "The evaluation report of the run", "kind": "report", "source": "results.*",
        "rules": "as the tables it shows"})
    for i, (payload, caption) in enumerate(FIGURE.findall(report), start=1):
        label = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", caption)).split())
        staged[f"figures/figure_{i:02d}.svg"] = (base64.b64decode(payload), {
            "label": label, "kind": "figure", "source": "report.html", "rules": "as the tables it shows"})
    if len(staged) + 1 > MAX_FILES:
        raise ExportRefused(f"the bundle would hold {len(staged) + 1} files, more than {MAX_FILES}")
    for path, (data, _) in staged.items():
        _screen(path, data)
    return _write(out, run_id, thresholds, staged)


def _run(con: Any, run_id: str | None) -> tuple[str, str]:
    if run_id is None:
        rows = con.execute("select run_id, config from meta.runs where status = 'completed' "
                           "order by finished_at desc limit 1").fetchall()
        if not rows:
            raise KokeiluError("the database holds no completed run to export: run `kokeilu run` first")
    else:
        rows = con.execute("select run_id, config from meta.runs where run_id = ? and status = 'completed'",
                           [run_id]).fetchall()
        if not rows:
            raise KokeiluError(f"run {run_id} is not a completed run of this database")
    return rows[0][0], rows[0][1]


def _thresholds(config_json: str, config: Any) -> dict[str, Any]:
    """The disclosure settings the run's results were decided under."""
    disclosure = json.loads(config_json).get("disclosure", {}) if config_json else {}
    if not disclosure and config is not None:
        disclosure = config.disclosure.model_dump()
    return disclosure


def _table(con: Any, name: str, run_id: str) -> pl.DataFrame | None:
    exists = con.execute("select count(*) from information_schema.tables where table_schema = 'results' "
                         "and table_name = ?", [name]).fetchall()[0][0]
    if not exists:
        return None
    return con.sql(f"select * from results.{name} where run_id = ? order by all", params=[run_id]).pl()


def _refuse_withheld_numbers(name: str, frame: pl.DataFrame) -> None:
    """A withheld row must carry no number but its counts: otherwise the export is refused."""
    if "suppressed" not in frame.columns:
        return
    hidden = frame.filter(pl.col("suppressed").fill_null(False))
    numbers = [c for c, t in hidden.schema.items() if t.is_float() and c not in COUNT_COLUMNS]
    leaks = [c for c in numbers if hidden[c].null_count() < hidden.height]
    if leaks:
        raise ExportRefused(f"results.{name}: withheld rows carry numbers in {', '.join(leaks)}")


def _counts(frame: pl.DataFrame) -> pl.DataFrame:
    keys = [c for c, t in frame.schema.items() if t == pl.String and c not in ("run_id", "suppression_rule")]
    counts = [c for c in COUNT_COLUMNS if c in frame.columns]
    flags = [c for c in ("suppressed", "suppression_rule") if c in frame.columns]
    return frame.select(*keys, *counts, *flags)


def _rules_applied(frame: pl.DataFrame) -> dict[str, int]:
    if "suppression_rule" not in frame.columns:
        return {"primary": int(frame["suppressed"].fill_null(False).sum())} if "suppressed" in frame.columns else {}
    counts = dict(frame["suppression_rule"].drop_nulls().value_counts().iter_rows())
    return {rule: int(counts.get(rule, 0)) for rule in RULES}


def _csv(frame: pl.DataFrame) -> bytes:
    return frame.write_csv().encode("utf-8")


def _screen(path: str, data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    if HETU.search(text):
        raise ExportRefused(f"{path} would carry an identity code: nothing was exported")
    if UUID.search(text):
        raise ExportRefused(f"{path} would carry a pseudonymised key (a UUID): nothing was exported")


def _write(out: Path, run_id: str, thresholds: dict[str, Any], staged: dict[str, tuple[bytes, dict[str, Any]]]) -> Bundle:
    """Write the files into a fresh directory beside ``out``, then put it in place (no half-written bundle)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise KokeiluError(f"{out} is not empty: export into a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    bundle = Bundle(run_id=run_id, out=out)
    for path, (data, entry) in staged.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        bundle.files.append({"path": path, **entry, "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"run_id": run_id, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "disclosure": thresholds, "files": bundle.files,
                "screened": "no identity code, no pseudonymised key, no number in a withheld row"}
    (work / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if out.exists():
        out.rmdir()
    shutil.move(str(work), str(out))
    return bundle
