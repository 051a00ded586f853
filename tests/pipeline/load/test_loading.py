"""Loading a generated delivery: row accounting, quarantine per rule, idempotence, re-delivery, privacy."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb

from pipeline import db
from pipeline.load import load_deliveries, load_delivery
from pipeline.pseudonym import DEMO_KEY
from schemas.hetu import HETU_PATTERN

HETU_ANYWHERE = re.compile(HETU_PATTERN.strip("^$"))
SAMPLE = Path(__file__).resolve().parents[3] / "fixtures" / "sample"


def test_rows_in_equal_staged_plus_quarantined(loaded_small) -> None:
    path, truth, totals = loaded_small
    assert totals["rows_in"] == totals["rows_valid"] + totals["rows_quarantined"]
    with db.connect(path, read_only=True) as con:
        staged = con.execute("select count(*) from staging.kela_income_support").fetchall()[0][0]
        avain = con.execute("select count(*) from staging.avain_assessments").fetchall()[0][0]
        by_rule = dict(con.execute("select rule, count(*) from quarantine.kela_income_support group by 1").fetchall())
        accounting = con.execute("select bool_and(rows_in = rows_staged + rows_quarantined) "
                                 "from meta.loaded_files").fetchall()[0][0]
    assert staged == truth["rows"]["kela_staged_after_correction"]
    assert avain == truth["rows"]["avain_staged"]
    assert by_rule == truth["bad_rows"]["kela"]
    assert accounting


def test_no_identity_code_in_any_text_column(loaded_small) -> None:
    path, _, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where data_type in ('VARCHAR', 'JSON')").fetchall()
        for schema, table, column in columns:
            hits = con.execute(
                f'select count(*) from "{schema}"."{table}" where regexp_matches("{column}"::varchar, ?)',
                [HETU_ANYWHERE.pattern]).fetchall()[0][0]
            assert hits == 0, f"{schema}.{table}.{column} holds identity codes"


def _tables(path: Path) -> dict[str, list]:
    with db.connect(path, read_only=True) as con:
        return {t: con.execute(f"select * exclude (run_id) from {t} order by all").fetchall()
                if "quarantine" in t else con.execute(f"select * from {t} order by all").fetchall()
                for t in ("staging.kela_income_support", "staging.avain_assessments",
                          "quarantine.kela_income_support", "quarantine.avain_assessments")}


def test_loading_twice_changes_nothing_and_correction_replaces_the_month(small_delivery, config, tmp_path) -> None:
    out, truth = small_delivery
    kela = tmp_path / "kela"
    shutil.copytree(out / "kela", kela)
    path = tmp_path / "twice.duckdb"
    with db.connect(path) as con:
        load_delivery(con, kela_dir=kela, avain_dir=None, key=DEMO_KEY, config=config, run_id="a")
    before = _tables(path)
    with db.connect(path) as con:
        again = load_delivery(con, kela_dir=kela, avain_dir=None, key=DEMO_KEY, config=config, run_id="b")
    assert again.totals()["files_skipped_unchanged"] == len(list(kela.iterdir()))
    assert _tables(path) == before
    month = truth["corrected_month"]
    with db.connect(path) as con:
        load_delivery(con, kela_dir=out / "kela_correction", avain_dir=None, key=DEMO_KEY, config=config,
                      run_id="c")
        n = con.execute("select count(*) from staging.kela_income_support where tilastokuukausi = ?",
                        [month]).fetchall()[0][0]
        files = con.execute("select count(*) from meta.loaded_files where period = ?", [month]).fetchall()[0][0]
    assert n == truth["rows"]["kela_correction"]
    assert files == 1


def _manifest(path: Path) -> list[tuple]:
    with db.connect(path, read_only=True) as con:
        return con.execute("select extract, file_name, period, sha256, rows_in, rows_staged, rows_quarantined "
                           "from meta.loaded_files order by all").fetchall()


def test_delivery_and_correction_in_one_load_equal_two_loads(config, tmp_path) -> None:
    """``load_deliveries`` streams a delivery and its correction together; the tables are those of loading
    one after the other, and loading both again keeps the corrected month (its file is not skipped as
    unchanged when the delivery's own month, loaded again first, replaced it)."""
    out = SAMPLE
    truth = json.loads((SAMPLE / "truth.json").read_text(encoding="utf-8"))
    deliveries = [(out / "kela", out / "avain"), (out / "kela_correction", None)]
    apart, together = tmp_path / "apart.duckdb", tmp_path / "together.duckdb"
    with db.connect(apart) as con:
        expected = [load_delivery(con, kela_dir=k, avain_dir=a, key=DEMO_KEY, config=config, run_id="r")
                    for k, a in deliveries]
    with db.connect(together) as con:
        reports = load_deliveries(con, deliveries, key=DEMO_KEY, config=config, run_id="r")
    assert [r.totals() for r in reports] == [r.totals() for r in expected]
    assert _tables(together) == _tables(apart)
    assert _manifest(together) == _manifest(apart)
    with db.connect(together) as con:
        again = load_deliveries(con, deliveries, key=DEMO_KEY, config=config, run_id="s")
    assert again[1].totals()["files_skipped_unchanged"] == 0
    assert again[0].totals()["files_skipped_unchanged"] == again[0].totals()["files"] - 1
    assert _tables(together) == _tables(apart)
    with db.connect(together, read_only=True) as con:
        n = con.execute("select count(*) from staging.kela_income_support where tilastokuukausi = ?",
                        [truth["corrected_month"]]).fetchall()[0][0]
    assert n == truth["rows"]["kela_correction"]


def test_same_key_same_person_key_other_key_other(small_delivery, config, tmp_path) -> None:
    out, _ = small_delivery
    keys = []
    for i, key in enumerate((DEMO_KEY, DEMO_KEY, b"another-key-of-at-least-16-bytes")):
        path = tmp_path / f"k{i}.duckdb"
        one = tmp_path / f"d{i}"
        one.mkdir()
        shutil.copy(out / "kela" / "toimeentulotuki_201705.csv", one)
        with db.connect(path) as con:
            load_delivery(con, kela_dir=one, avain_dir=None, key=key, config=config, run_id="k")
            keys.append(con.execute("select list(person_key order by person_key) from staging.kela_income_support")
                        .fetchall()[0][0])
    assert keys[0] == keys[1] != keys[2]


def test_person_key_is_the_keyed_hash_of_the_rows_identity_code(small_delivery, config, tmp_path) -> None:
    """Each staged row's person_key is the first 16 bytes of HMAC-SHA-256 of the code on its line."""
    import csv
    import hashlib
    import hmac
    import uuid

    out, _ = small_delivery
    source = out / "kela" / "toimeentulotuki_201705.csv"
    with source.open(encoding="utf-8-sig", newline="") as fh:
        codes = {i: row["hetu"] for i, row in enumerate(csv.DictReader(fh, delimiter=";"), start=2)}
    with db.connect(tmp_path / "keys.duckdb") as con:
        load_delivery(con, kela_dir=source.parent, avain_dir=None, key=DEMO_KEY, config=config, run_id="k")
        staged = con.execute("select source_line, person_key from staging.kela_income_support "
                             "where source_file = ?", [source.name]).fetchall()
    assert len(staged) > 1000
    for line, key in staged:
        assert key == uuid.UUID(bytes=hmac.digest(DEMO_KEY, codes[line].encode("ascii"), hashlib.sha256)[:16])


def test_database_in_use_fails_at_once(tmp_path) -> None:
    import subprocess
    import sys

    import pytest

    from pipeline.errors import DatabaseBusyError

    path = tmp_path / "busy.duckdb"
    duckdb.connect(str(path)).close()
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(path)!r}); "
                               "print('ok', flush=True); time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(DatabaseBusyError), db.connect(path):
            pass
    finally:
        holder.kill()


def test_small_files_checked_together_as_each_alone(small_delivery, config, tmp_path) -> None:
    """AVAIN-style files are checked in one pass: results and rows as file by file, set rules within a file."""
    import polars as pl

    from pipeline.load import check_file, check_files
    from pipeline.load.files import classify

    out, _ = small_delivery
    corpus = Path(__file__).resolve().parents[3] / "fixtures" / "bad_deliveries" / "cases"
    files = sorted(out.joinpath("avain").iterdir())[:40] + sorted(corpus.glob("*/avain_*"))
    # the same rows under another municipality's name: a duplicate key across files is not one
    twin = tmp_path / files[0].name.replace(files[0].name[6:9], "999")
    twin.write_bytes(files[0].read_bytes())
    delivered = [d for p in [*files, twin] if (d := classify(p)) is not None]
    assert len(delivered) > 40
    together = check_files(delivered, config)
    for f, (result, rows) in zip(delivered, together, strict=True):
        alone, alone_rows = check_file(f, config)
        assert result.as_dict() == alone.as_dict(), f.name
        assert (rows is None) == (alone_rows is None)
        if rows is not None:
            assert rows.equals(alone_rows.select(rows.columns)), f.name
    assert any(r.rows_quarantined for r, _ in together)
    assert together[-1][0].by_rule.get("kuntanumero_file_mismatch") == together[-1][0].rows_in
    assert pl.concat([rows for _, rows in together if rows is not None]).height > 500


def test_identity_codes_checked_from_several_threads_as_from_one(small_delivery) -> None:
    """Files are checked in several threads sharing one memory of identity codes: the same answers either way."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.load.checks import IdentityCodes
    from pipeline.load.files import classify, read_rows
    from pipeline.pseudonym import Pseudonymiser

    out, _ = small_delivery
    frames = [read_rows(classify(p)).frame for p in sorted((out / "kela").glob("*.csv"))[:12]]
    alone = IdentityCodes(pseudonymiser=Pseudonymiser(DEMO_KEY))
    expected = [alone.attach(f) for f in frames]
    shared = IdentityCodes(pseudonymiser=Pseudonymiser(DEMO_KEY))
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(shared.attach, frames))
    assert all(g.equals(e) for g, e in zip(got, expected, strict=True))
    assert shared._known.height == alone._known.height
    assert shared._known["_n"].is_unique().all()
