"""The results database: opening it safely, running SQL files, run metadata.

DuckDB allows one writing process per database file. A second run against a
database in use fails at once with :class:`~pipeline.errors.DatabaseBusyError`
(one line, naming the file) instead of waiting or corrupting anything. Every
stage writes inside a transaction, so a run killed at any point leaves the
database at its last committed state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import duckdb

from pipeline.errors import DatabaseBusyError, InputError

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

RESULT_MODELS: tuple[str, ...] = (
    "meta/runs.sql",
    "meta/key_fingerprint.sql",
    "results/did_estimates.sql",
    "results/event_study.sql",
    "results/pretrend_tests.sql",
    "results/inference.sql",
    "results/placebo_size.sql",
    "results/robustness.sql",
    "results/cost.sql",
    "results/balance.sql",
)
"""DDL of the run metadata and results tables, in the order they are created."""

STAGING_MODELS: tuple[str, ...] = (
    "meta/loaded_files.sql",
    "meta/validation_results.sql",
    "staging/kela_income_support.sql",
    "staging/avain_assessments.sql",
    "quarantine/kela_income_support.sql",
    "quarantine/avain_assessments.sql",
)
"""DDL of the loaded-file manifest, validation results, staging and quarantine tables."""


def sql_text(name: str) -> str:
    """The text of one SQL file under ``sql/`` (e.g. ``'results/did_estimates.sql'``)."""
    path = SQL_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"SQL model {name} not found under {SQL_DIR}")
    return path.read_text(encoding="utf-8")


def execute_file(con: duckdb.DuckDBPyConnection, name: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> None:
    """Run one SQL file; parameters are bound, never formatted into the text."""
    text = sql_text(name)
    if params:
        con.execute(text, params)
    else:
        con.execute(text)


@contextmanager
def connect(path: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the database file, failing in one line if another process holds it."""
    if read_only and not Path(path).exists():
        raise InputError(f"results database {path} does not exist")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseBusyError(
                f"database {path} is in use by another kokeilu run (or another program); "
                "wait for it to finish, or use another --db"
            ) from None
        raise InputError(f"cannot open database {path}: {str(exc).splitlines()[0]}") from None
    except duckdb.Error as exc:
        raise InputError(f"cannot open database {path}: {str(exc).splitlines()[0]}") from None
    try:
        con.execute("set enable_progress_bar = false")
        yield con
    finally:
        con.close()


@contextmanager
def using(db: Path | duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for a stage: ``db`` itself if it is one (left open), else the file opened and closed after."""
    if isinstance(db, duckdb.DuckDBPyConnection):
        yield db
        return
    with connect(Path(db)) as con:
        yield con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Commit the block as a whole, or roll it back and re-raise."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


def ensure_result_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the run metadata and results tables (with their comments) if missing."""
    for name in RESULT_MODELS + STAGING_MODELS:
        execute_file(con, name)


def code_version() -> str:
    """kokeilu's version and, when run from a git checkout, its commit."""
    try:
        ver = version("kokeilu")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        ver = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=SQL_DIR.parent, capture_output=True,
            text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=SQL_DIR.parent,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{ver}+g{commit}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return ver


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def input_manifest(*dirs: Path | None, known: dict[Path, str] | None = None,
                   hashed: bool = True) -> list[dict[str, str | None]]:
    """Name, directory role and SHA-256 of every delivery file under the given directories.

    ``known`` holds digests already taken (the loader hashes the bytes it reads);
    other files are hashed here, or with ``hashed=False`` listed without a digest.
    """
    known = {Path(p).resolve(): sha for p, sha in (known or {}).items()}
    out: list[dict[str, str | None]] = []
    for d in dirs:
        if d is None or not Path(d).is_dir():
            continue
        for path in sorted(Path(d).iterdir()):
            if path.is_file() and path.suffix.lower() in {".csv", ".parquet"}:
                sha = known.get(path.resolve()) or (sha256_file(path) if hashed else None)
                out.append({"file": path.name, "directory": Path(d).name, "sha256": sha})
    return out


def record_inputs(con: duckdb.DuckDBPyConnection, *, run_id: str, inputs: list[dict[str, str | None]]) -> None:
    """Replace a run's list of input files (with their SHA-256 once the files have been read)."""
    con.execute("update meta.runs set inputs = ? where run_id = ?", [json.dumps(inputs), run_id]).fetchall()


def new_run_id() -> str:
    """A fresh run identifier: UTC time to the second, then a random suffix."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def this_process() -> tuple[str, int, dt.datetime]:
    """Host name, process id and process start time (UTC) of the calling process, as a run records them."""
    import psutil

    pid = os.getpid()
    return socket.gethostname(), pid, dt.datetime.fromtimestamp(psutil.Process(pid).create_time(), dt.UTC)


def start_run(con: duckdb.DuckDBPyConnection, *, run_id: str, config_json: str, inputs: list[dict[str, str]]) -> None:
    """Record a run as ``running`` (committed at once, so a killed run stays visible), with the host, id and
    start time of its process: a later run tells from them whether it is still alive."""
    ensure_result_tables(con)
    host, pid, started = this_process()
    con.execute(
        "insert into meta.runs (run_id, started_at, status, code_version, config, inputs, host, pid, "
        "process_started_at) values (?, now(), 'running', ?, ?, ?, ?, ?, ?)",
        [run_id, code_version(), config_json, json.dumps(inputs), host, pid, started],
    )


def finish_run(con: duckdb.DuckDBPyConnection, *, run_id: str, status: str, message: str | None = None) -> None:
    """Mark a run ``completed`` or ``failed``."""
    con.execute(
        "update meta.runs set finished_at = now(), status = ?, message = ? where run_id = ?",
        [status, message, run_id],
    )


def query_frame(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None):  # noqa: ANN201
    """The result of a parameterised query as a polars DataFrame."""
    return con.sql(sql, params=list(params or [])).pl()


MAX_MONTH_SLOTS = 127
"""Months a date key column may span for the month-bitmap duplicate screen (bits of a HUGEINT)."""


def column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column name to DuckDB type name (upper case) of a ``schema.table``."""
    rows = con.execute(
        "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ?",
        table.split("."),
    ).fetchall()
    return {name: str(kind).upper() for name, kind in rows}


def _duplicate_screen(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]) -> tuple[str, str, list[Any]]:
    """A query returning hash values ``h`` that cover every duplicated key, its hash expression and parameters.

    Grouping tens of millions of rows by a long key is the cost of a uniqueness
    check, so the screen groups by a 64-bit ``hash`` instead. When one key column
    is a DATE spanning at most :data:`MAX_MONTH_SLOTS` months, rows are grouped by
    the hash of the *other* key columns (about one group per person) and each
    group sets one bit per calendar month; a group holding more rows than bits
    set may hold a duplicate. Otherwise rows are grouped by the hash of the
    whole key. A true duplicate always lands in a flagged group; a hash
    collision, two dates in one month or a NULL date only flags a group for the
    exact recount. ``hash`` takes any column type.
    """
    types = column_types(con, table)
    date_col = next((c for c in columns if types.get(c) == "DATE"), None)
    rest = [c for c in columns if c != date_col]
    if date_col is not None and rest:
        lo, span = con.execute(
            f"select min({date_col}), datediff('month', min({date_col}), max({date_col})) from {table}"
        ).fetchall()[0]
        if span is not None and span < MAX_MONTH_SLOTS:
            key = f"hash({', '.join(rest)})"
            bit = f"1::hugeint << datediff('month', ?, {date_col})::hugeint"
            sql = (f"select {key} as h from {table} group by h "
                   f"having count(*) <> coalesce(bit_count(bit_or({bit})), 0)")
            return sql, key, [lo]
    key = f"hash({', '.join(columns)})"
    return f"select {key} as h from {table} group by h having count(*) > 1", key, []


def duplicate_counts(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]) -> tuple[int, int]:
    """Rows of ``table`` in groups sharing a value of ``columns``, and of those the rows beyond each group's first.

    A hash screen (:func:`_duplicate_screen`) finds the candidate groups in one
    scan; only when it flags any are they recounted exactly on their real key
    values, so both counts are exact whatever the key's column types.
    """
    screen, key, params = _duplicate_screen(con, table, columns)
    if not con.execute(f"select count(*) from ({screen})", params).fetchall()[0][0]:
        return 0, 0
    cols = ", ".join(columns)
    rows, extra = con.execute(
        f"select coalesce(sum(n), 0), coalesce(sum(n - 1), 0) from (select count(*) as n from {table} "
        f"where {key} in ({screen}) group by {cols} having count(*) > 1)", params
    ).fetchall()[0]
    return int(rows), int(extra)
