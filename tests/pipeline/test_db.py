"""The results database: one writer at a time, transactions, run metadata."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipeline import db as _db
from pipeline.errors import DatabaseBusyError


def test_result_tables_have_comments_on_every_column(tmp_path: Path) -> None:
    with _db.connect(tmp_path / "e.duckdb") as con:
        _db.ensure_result_tables(con)
        _db.ensure_result_tables(con)  # idempotent
        missing = con.execute(
            "select schema_name || '.' || table_name || '.' || column_name from duckdb_columns() "
            "where schema_name in ('results', 'meta') and (comment is null or comment = '')"
        ).fetchall()
        tables = con.execute(
            "select table_name from duckdb_tables() where schema_name in ('results', 'meta') "
            "and (comment is null or comment = '')"
        ).fetchall()
    assert missing == [] and tables == []


def test_second_writer_fails_at_once_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "e.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DatabaseBusyError) as err:
            with _db.connect(path):
                pass
        assert "in use" in str(err.value) and "\n" not in str(err.value)
    finally:
        holder.kill()
        holder.wait()


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    with _db.connect(tmp_path / "e.duckdb") as con:
        con.execute("create table t (x int)")
        with pytest.raises(RuntimeError):
            with _db.transaction(con):
                con.execute("insert into t values (1)")
                raise RuntimeError("boom")
        assert con.execute("select count(*) from t").fetchone() == (0,)


def test_run_is_recorded_with_inputs_and_config(tmp_path: Path) -> None:
    delivery = tmp_path / "kela"
    delivery.mkdir()
    (delivery / "toimeentulotuki_201701.csv").write_text("hetu;x\n", encoding="utf-8")
    inputs = _db.input_manifest(delivery, None)
    with _db.connect(tmp_path / "e.duckdb") as con:
        _db.start_run(con, run_id="r1", config_json='{"a": 1}', inputs=inputs)
        _db.finish_run(con, run_id="r1", status="completed")
        status, cfg, ins, version = con.execute("select status, config, inputs, code_version from meta.runs").fetchone()
    assert status == "completed"
    assert json.loads(cfg) == {"a": 1}
    assert json.loads(ins)[0]["sha256"] == _db.sha256_file(delivery / "toimeentulotuki_201701.csv")
    assert version.startswith("0.")


def test_input_manifest_takes_known_digests_and_can_list_without_hashing(tmp_path: Path) -> None:
    delivery = tmp_path / "kela"
    delivery.mkdir()
    for month in ("01", "02"):
        (delivery / f"toimeentulotuki_2017{month}.csv").write_text(f"hetu;x{month}\n", encoding="utf-8")
    first, second = sorted(delivery.iterdir())
    assert [i["sha256"] for i in _db.input_manifest(delivery, hashed=False)] == [None, None]
    listed = _db.input_manifest(delivery, known={first: "given"})
    assert [i["sha256"] for i in listed] == ["given", _db.sha256_file(second)]


def test_every_sql_file_parses(tmp_path: Path) -> None:
    """Nothing under sql/ is dead on arrival: each file at least parses in DuckDB."""
    con = duckdb.connect()
    bad = []
    for path in sorted(_db.SQL_DIR.rglob("*.sql")):
        try:
            for statement in con.extract_statements(path.read_text(encoding="utf-8")):
                assert statement.query
        except duckdb.Error as exc:
            bad.append(f"{path.name}: {exc}")
    assert not bad
