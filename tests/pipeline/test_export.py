"""The output-check bundle of the committed sample: at most 50 files, each in the manifest with its rule
outcomes; nothing withheld, no identity code and no pseudonymised key in it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline import db
from pipeline.export import HETU, MAX_FILES, UUID, ExportRefused, export_bundle


@pytest.fixture(scope="module")
def bundle(evaluated_sample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "bundle"
    done = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", "export", "--db",
                           str(evaluated_sample.db), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "manifest" in done.stdout
    return out


def test_every_file_is_in_the_manifest_with_its_rules(bundle: Path, evaluated_sample) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    files = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert len(files) <= MAX_FILES
    listed = {f["path"]: f for f in manifest["files"]}
    assert sorted([*listed, "manifest.json"]) == files
    assert manifest["run_id"] == evaluated_sample.run_id
    assert manifest["disclosure"]["min_cell_persons"] == evaluated_sample.config.disclosure.min_cell_persons
    for path, entry in listed.items():
        assert entry["label"] and entry["kind"] in {"table", "counts", "figure", "report"}
        assert hashlib.sha256((bundle / path).read_bytes()).hexdigest() == entry["sha256"]
    kinds = {f["kind"] for f in manifest["files"]}
    assert kinds == {"table", "counts", "figure", "report"}
    estimates = listed["tables/did_estimates.csv"]
    assert estimates["rows_withheld"] > 0, "the sample's threshold should withhold some rows"
    assert sum(estimates["rules"].values()) == estimates["rows_withheld"]


def test_nothing_withheld_and_no_key_or_identity_code(bundle: Path, evaluated_sample) -> None:
    with db.connect(evaluated_sample.db, read_only=True) as con:
        keys = {str(k) for (k,) in con.execute("select distinct person_key from panel.cohort").fetchall()}
        hidden = con.execute("select outcome, estimator, subgroup from results.did_estimates "
                             "where run_id = ? and suppressed", [evaluated_sample.run_id]).fetchall()
    for path in bundle.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not HETU.search(text), path
            assert not UUID.search(text), path
            assert not any(k in text for k in keys), path
    table = pl.read_csv(bundle / "tables" / "did_estimates.csv")
    withheld = table.filter(pl.col("suppressed"))
    assert set(withheld.select("outcome", "estimator", "subgroup").iter_rows()) == set(hidden)
    for column in ("estimate", "std_error", "ci_low", "ci_high", "p_value"):
        assert withheld[column].null_count() == withheld.height, column


def test_a_withheld_number_refuses_the_export(evaluated_sample, tmp_path: Path) -> None:
    copy = tmp_path / "e.duckdb"
    shutil.copy(evaluated_sample.db, copy)
    with duckdb.connect(str(copy)) as con:
        con.execute("update results.did_estimates set estimate = 0.123 where suppressed and run_id = ?",
                    [evaluated_sample.run_id])
    with pytest.raises(ExportRefused, match="withheld rows carry numbers"):
        export_bundle(copy, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_export_needs_a_new_directory(evaluated_sample, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x", encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", "export", "--db",
                           str(evaluated_sample.db), "--out", str(tmp_path / "full")], capture_output=True, text=True)
    assert done.returncode == 2 and "not empty" in done.stderr and done.stderr.count("\n") == 1
