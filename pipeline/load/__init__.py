"""Loading deliveries into DuckDB: contract checks, pseudonymisation, quarantine, manifest.

Every delivered file goes through the same steps:

1. its bytes are read once: their SHA-256 decides whether it is already loaded,
   and :func:`~pipeline.load.files.read_rows` cuts them into raw text fields (or
   names the file rule it breaks: the file is then reported and nothing of it loaded);
2. :func:`~pipeline.load.checks.broken_rules` applies the contract's row and set
   rules, vectorised (small AVAIN-style files many at a time); each distinct
   identity code of the load is checked, dated and pseudonymised once
   (:class:`~pipeline.load.checks.IdentityCodes`);
3. valid rows carry ``person_key`` (HMAC-SHA-256), birth date and sex instead of
   the identity code; Kela-style values are typed by polars (:func:`staging_types`),
   AVAIN-style ones by DuckDB as they are inserted (one statement per table, from
   Arrow); rejected rows keep their raw fields with the identity code masked;
4. in one transaction: the file's earlier rows (a re-delivery) leave staging and
   quarantine, the new rows enter, the manifest ``meta.loaded_files`` and the
   per-rule counts in ``meta.validation_results`` are written. Small files share
   a transaction (up to ``BATCH_ROWS`` rows), which keeps each file atomic.

Steps 1-3 of the next files run in ``WORKERS`` threads while step 4 of the current
one runs in DuckDB. A file whose name and SHA-256 are already in the manifest is
skipped: loading the same delivery twice changes nothing. Rows in = rows staged +
rows quarantined for every file, always.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from pipeline import db as _db
from pipeline.errors import InputError
from pipeline.load import guards
from pipeline.load.checks import IdentityCodes, broken_rules_by_file
from pipeline.load.files import DeliveredFile, FileRuleBroken, RawRows, classify, looks_like_delivery, read_rows
from schemas.columns import COLUMNS, CheckContext
from schemas.config import EvaluationConfig
from schemas.hetu import mask_hetu
from schemas.rules import rules_for

VIOLATIONS_SHOWN = 20


@dataclass
class FileResult:
    """What happened to one delivered file."""

    file: str
    extract: str
    rows_in: int = 0
    rows_staged: int = 0
    rows_quarantined: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    file_rule: str | None = None
    detail: str | None = None
    skipped: bool = False
    extra_columns: list[str] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    path: str | None = None
    sha256: str | None = None  # of the bytes read (for an unchanged file, of those loaded before)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class ValidationReport:
    """The outcome of checking (and possibly loading) a delivery."""

    files: list[FileResult] = field(default_factory=list)
    unusable: str | None = None

    @property
    def exit_code(self) -> int:
        """0 all good, 1 contract violations, 2 unusable input."""
        if self.unusable:
            return 2
        if any(f.file_rule or f.rows_quarantined for f in self.files):
            return 1
        return 0

    def totals(self) -> dict[str, Any]:
        """Rows in, staged, quarantined and quarantined per rule over all files."""
        by_rule: dict[str, int] = {}
        for f in self.files:
            for rule, n in f.by_rule.items():
                by_rule[rule] = by_rule.get(rule, 0) + n
        return {
            "files": len(self.files),
            "files_rejected": sum(1 for f in self.files if f.file_rule),
            "files_skipped_unchanged": sum(1 for f in self.files if f.skipped),
            "rows_in": sum(f.rows_in for f in self.files),
            "rows_valid": sum(f.rows_staged for f in self.files),
            "rows_quarantined": sum(f.rows_quarantined for f in self.files),
            "quarantined_by_rule": dict(sorted(by_rule.items())),
        }

    def summary(self) -> dict[str, Any]:
        """Totals, for run metadata and Prefect artifacts."""
        return self.totals()

    def to_json(self) -> str:
        """Machine-readable result (``kokeilu validate --json``)."""
        return json.dumps({"exit_code": self.exit_code, "unusable": self.unusable, "totals": self.totals(),
                           "files": [f.as_dict() for f in self.files]}, indent=2, ensure_ascii=False)

    def render(self) -> None:
        """A readable summary in the terminal."""
        from rich.console import Console
        from rich.table import Table

        console = Console()
        if self.unusable:
            console.print(f"[red]unusable input:[/red] {self.unusable}")
            return
        table = Table(title="Delivery check", title_justify="left")
        for name in ("file", "rows in", "valid", "quarantined", "problem"):
            table.add_column(name, justify="left" if name in ("file", "problem") else "right")
        for f in self.files:
            problem = (f"{f.file_rule}: {f.detail}" if f.file_rule
                       else ", ".join(f"{r} {n}" for r, n in sorted(f.by_rule.items())))
            if f.skipped:
                problem = "unchanged, already loaded"
            table.add_row(f.file, f"{f.rows_in:,}", f"{f.rows_staged:,}", f"{f.rows_quarantined:,}", problem)
        console.print(table)
        shown = 0
        for f in self.files:
            if f.file_rule:
                console.print(f"{f.file}:0: {f.file_rule}: {f.detail}")
            for v in f.violations:
                if shown >= VIOLATIONS_SHOWN:
                    break
                console.print(f"{f.file}:{v['line']}: {v['rule']}: {v['detail']}", markup=False)
                shown += 1
        t = self.totals()
        more = t["rows_quarantined"] - shown
        if more > 0:
            console.print(f"... and {more:,} more rows with violations (--json lists them all)")
        console.print(f"{t['files']} files, {t['rows_in']:,} rows: {t['rows_valid']:,} valid, "
                      f"{t['rows_quarantined']:,} quarantined, {t['files_rejected']} files rejected")


# ------------------------------------------------------------------ discovery
def discover(directory: Path) -> tuple[list[DeliveredFile], list[FileResult]]:
    """The delivery files of a directory, and results for files named against the contract."""
    files, bad = [], []
    for path in sorted(Path(directory).iterdir()):
        if not path.is_file():
            continue
        f = classify(path)
        if f is not None:
            files.append(f)
        elif (extract := looks_like_delivery(path)) is not None:
            bad.append(FileResult(path.name, extract, file_rule="file_name",
                                  detail="expected toimeentulotuki_YYYYMM.csv|parquet or avain_KKK_YYYY.csv|parquet"))
    return files, bad


def _context(f: DeliveredFile, config: EvaluationConfig) -> CheckContext:
    return CheckContext(municipalities=config.municipality_codes(), file_month=f.file_month,
                        file_kuntanumero=f.file_kuntanumero, file_year=f.file_year,
                        require_synthetic_hetu=config.require_synthetic_hetu)


def check_file(f: DeliveredFile, config: EvaluationConfig, *, data: bytes | None = None,
               identities: IdentityCodes | None = None,
               allow_empty: bool = False) -> tuple[FileResult, pl.DataFrame | None]:
    """Read and check one file: its result, and its rows with ``rule`` (null = valid; None if a file rule broke).

    ``data`` is the file's bytes if already read; ``identities`` the identity codes
    already seen in this load (see :class:`~pipeline.load.checks.IdentityCodes`).
    """
    return check_files([f], config, datas=None if data is None else [data], identities=identities,
                       allow_empty=allow_empty)[0]


def check_files(files: list[DeliveredFile], config: EvaluationConfig, *, datas: list[bytes] | None = None,
                identities: IdentityCodes | None = None,
                allow_empty: bool = False) -> list[tuple[FileResult, pl.DataFrame | None]]:
    """:func:`check_file` of each file of one extract, their rows checked together in one pass.

    A Kela-style month file without data rows breaks ``file_no_rows`` (it would
    empty its month) unless ``allow_empty`` (``--allow-shrink REASON``).

    Checking a file has a fixed cost of some milliseconds whatever its size; an
    AVAIN-style delivery is hundreds of small files (one per municipality and year).
    """
    if len({f.extract for f in files}) > 1:
        raise ValueError("files checked together must be of one extract")
    results: list[FileResult] = []
    raws: list[RawRows | None] = []
    for f, data in zip(files, datas or [None] * len(files), strict=True):
        result = FileResult(f.name, f.extract)
        raw = None
        try:
            raw = read_rows(f, data)
            if f.extract == "kela" and raw.frame.height == 0 and not allow_empty:
                raw = None
                result.file_rule, result.detail = "file_no_rows", (
                    f"the file has a header but no data rows: loaded, it would empty month {f.period}; "
                    "load it anyway with --allow-shrink REASON")
        except FileRuleBroken as exc:
            result.file_rule, result.detail = exc.rule, exc.detail
        except OSError as exc:
            result.file_rule, result.detail = _unreadable(exc)
        results.append(result)
        raws.append(raw)
    read = [i for i, raw in enumerate(raws) if raw is not None]
    checked = broken_rules_by_file([raws[i].frame for i in read], files[0].extract if files else "kela",
                                   [_context(files[i], config) for i in read], identities)
    out: list[tuple[FileResult, pl.DataFrame | None]] = [(r, None) for r in results]
    for i, rows in zip(read, checked, strict=True):
        _summarise(results[i], rows, raws[i].extra_columns)
        out[i] = (results[i], rows)
    return out


def _summarise(result: FileResult, checked: pl.DataFrame, extra_columns: list[str]) -> None:
    """Fill a file's result from its checked rows."""
    bad = checked.filter(pl.col("rule").is_not_null())
    result.rows_in = checked.height
    result.rows_quarantined = bad.height
    result.rows_staged = checked.height - bad.height
    result.by_rule = {r: int(n) for r, n in bad.group_by("rule").len().iter_rows()}
    result.extra_columns = extra_columns
    result.violations = [
        {"line": int(line), "rule": rule, "detail": _detail(rule, rules)}
        for line, rule, rules in bad.select("source_line", "rule", "rules").sort("source_line").iter_rows()
    ]


def _unreadable(exc: OSError) -> tuple[str, str]:
    return "file_unreadable", f"cannot read the file: {exc.strerror or exc}"


def _detail(rule: str, rules: list[str] | None) -> str:
    from schemas.rules import RULES

    text = f"breaks: {RULES[rule].description}"
    others = [r for r in (rules or []) if r != rule]
    if others:
        text += f" (also {', '.join(others)})"
    return text


def validate_delivery(directory: Path, *, config: EvaluationConfig, allow_empty: bool = False) -> ValidationReport:
    """Check every extract in a directory against the contracts, without loading anything (``allow_empty``:
    a Kela-style month file without data rows is accepted, as ``--allow-shrink`` does)."""
    report = ValidationReport()
    directory = Path(directory)
    if not directory.is_dir():
        report.unusable = f"{directory} is not a directory"
        return report
    files, bad = discover(directory)
    if not files and not bad:
        report.unusable = f"{directory} holds no toimeentulotuki_*.csv/.parquet or avain_*.csv/.parquet files"
        return report
    report.files.extend(bad)
    identities = IdentityCodes(require_synthetic=config.require_synthetic_hetu)
    for job in _jobs(files):
        report.files.extend(r for r, _ in check_files(job, config, identities=identities, allow_empty=allow_empty))
    return report


# ---------------------------------------------------------------------- loading
def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the manifest, validation, staging and quarantine tables if missing; migrate older ones."""
    for name in _db.STAGING_MODELS:
        _db.execute_file(con, name)
    _migrate_person_key(con)


def _migrate_person_key(con: duckdb.DuckDBPyConnection) -> None:
    """Staging written before ``person_key`` became a UUID held the whole 64-digit hex digest as text.

    Its first 32 digits are the UUID the same key gives today, so the conversion
    is exact and keeps incremental loads lined up with earlier ones.
    """
    old = con.execute("select table_name from information_schema.columns where table_schema = 'staging' "
                      "and column_name = 'person_key' and data_type = 'VARCHAR'").fetchall()
    for (table,) in old:
        con.execute(f"alter table staging.{table} alter person_key set data type uuid "
                    f"using left(person_key, 32)::uuid").fetchall()


def load_delivery(con: duckdb.DuckDBPyConnection, *, kela_dir: Path | None, avain_dir: Path | None, key: bytes,
                  config: EvaluationConfig, run_id: str, progress: bool = False,
                  allow_shrink: str | None = None) -> ValidationReport:
    """Load the Kela-style and AVAIN-style files of a delivery into staging, incrementally."""
    return load_deliveries(con, [(kela_dir, avain_dir)], key=key, config=config, run_id=run_id,
                           progress=progress, allow_shrink=allow_shrink)[0]


def load_deliveries(con: duckdb.DuckDBPyConnection, deliveries: list[tuple[Path | None, Path | None]], *,
                    key: bytes, config: EvaluationConfig, run_id: str, progress: bool = False,
                    allow_shrink: str | None = None) -> list[ValidationReport]:
    """Load several deliveries in order, each ``(kela_dir, avain_dir)``, as if one after the other: a report each.

    A later delivery re-delivers what an earlier one brought (a corrected month):
    its files are written after the earlier ones and replace them. The files of
    all the deliveries go through one stream of reading threads and one writer, and
    each identity code is pseudonymised once, so a correction costs what its own rows do.

    Nothing is written under another pseudonymisation key than the one that built
    the database (:class:`~pipeline.load.guards.KeyMismatchError`), and a Kela-style
    file that would empty or shrink its month beyond ``config.loading.max_month_shrink``
    is refused (file rules ``file_no_rows``, ``month_shrinks``) unless ``allow_shrink``
    gives the reason to load it anyway, which ``meta.loaded_files.override_reason`` keeps.
    """
    from pipeline.pseudonym import Pseudonymiser

    identities_key = Pseudonymiser(key)  # a key too short fails here, before anything is written
    guards.check_key(con, key)
    ensure_tables(con)
    guards.record_key(con, key, run_id=run_id)
    identities = IdentityCodes(require_synthetic=config.require_synthetic_hetu, pseudonymiser=identities_key)
    reports = [ValidationReport() for _ in deliveries]
    for pair in deliveries:
        for d in pair:
            if d is not None and not Path(d).is_dir():
                raise InputError(f"{d} is not a directory")
    todo: list[tuple[DeliveredFile, ValidationReport]] = []
    for report, pair in zip(reports, deliveries, strict=True):
        for d in dict.fromkeys(d for d in pair if d is not None):
            files, bad = discover(Path(d))
            report.files.extend(bad)
            todo.extend((f, report) for f in files)
    manifest = con.execute("select extract, file_name, period, sha256, rows_in, rows_staged, rows_quarantined "
                           "from meta.loaded_files").fetchall()
    loaded = {(e, n): sha for e, n, _, sha, *_ in manifest}
    # a file unchanged since it was loaded is skipped, unless an earlier file of this load replaces it first
    unchanged: dict[Path, str] = {}
    ahead: set[tuple[str, str]] = set()
    for f, _ in todo:
        if (f.extract, f.name) in loaded and _replaces(f.extract, f.name, f.period) not in ahead:
            unchanged[f.path] = loaded[(f.extract, f.name)]
        ahead.add(_replaces(f.extract, f.name, f.period))
    writer = _Writer(con, run_id, present={_replaces(e, n, p) for e, n, p, *_ in manifest})
    month_rows: dict[str, int] = {}  # valid rows each Kela-style month holds (as the load goes on)
    for e, _, p, _, _, staged, _ in manifest:
        if e == "kela":
            month_rows[p] = month_rows.get(p, 0) + staged
    prepared = _prepared([f for f, _ in todo], unchanged, config, identities, run_id,
                         allow_empty=allow_shrink is not None)
    for (f, sha, result, rows), (_, report) in zip(_progress(prepared, len(todo), progress), todo, strict=True):
        if result is None:
            prev = next(counts for e, n, _, _, *counts in manifest if (e, n) == (f.extract, f.name))
            report.files.append(FileResult(f.name, f.extract, rows_in=prev[0], rows_staged=prev[1],
                                           rows_quarantined=prev[2], skipped=True, path=str(f.path), sha256=sha))
            continue
        result.path, result.sha256 = str(f.path), sha or None
        report.files.append(result)
        override = None
        if f.extract == "kela" and rows is not None:
            rows, override = _guard_month(f, result, rows, month_rows, config.loading.max_month_shrink, allow_shrink)
        writer.add(f, result, rows, sha, override)
    writer.flush()
    return reports


def _guard_month(f: DeliveredFile, result: FileResult, rows: _Rows, month_rows: dict[str, int], max_shrink: float,
                 allow_shrink: str | None) -> tuple[_Rows | None, str | None]:
    """A checked Kela-style file's rows, or None when it would shrink its month too far (``month_shrinks`` is
    then its file rule and nothing of it is loaded); and the override recorded when ``allow_shrink`` lets it in."""
    before = month_rows.get(f.period, 0)
    shrink = guards.shrink_refusal(f.period, before, result.rows_staged, max_shrink)
    if shrink is not None and allow_shrink is None:
        result.file_rule, result.detail = "month_shrinks", guards.shrink_detail(shrink, max_shrink)
        result.rows_in = result.rows_staged = result.rows_quarantined = 0
        result.by_rule, result.violations = {}, []
        return None, None
    month_rows[f.period] = result.rows_staged
    if shrink is not None:
        return rows, f"month_shrinks ({before:,} -> {result.rows_staged:,} rows): {allow_shrink}"
    if result.rows_in == 0:
        return rows, f"file_no_rows: {allow_shrink}"
    return rows, None


REFUSALS = ("file_no_rows", "month_shrinks")
"""File rules that protect loaded data: a run stops (exit 1) when a file breaks one."""


def refusals(reports: list[ValidationReport]) -> list[FileResult]:
    """The files of a load refused because they would have emptied or shrunk their month."""
    return [f for report in reports for f in report.files if f.file_rule in REFUSALS]


@dataclass(frozen=True)
class _Rows:
    """A checked file's rows as they are written: the valid ones typed for staging, the others for quarantine."""

    staged: pl.DataFrame
    quarantined: pl.DataFrame


Prepared = tuple[DeliveredFile, str, FileResult | None, _Rows | None]
"""A file, its SHA-256, its result (``None``: unchanged since it was loaded) and its rows (``None``: the file
broke a file rule or is unchanged)."""


WORKERS = 2
"""Threads reading and checking files ahead of the writer: the writer's DuckDB insert takes less than half of
a file's work, so one reader alone would keep it waiting."""

SMALL_FILES = 64
"""AVAIN-style files (small: one per municipality and year) read and checked together, at most."""


def _jobs(files: list[DeliveredFile]) -> list[list[DeliveredFile]]:
    """The files in order, runs of consecutive AVAIN-style files grouped (up to ``SMALL_FILES``)."""
    jobs: list[list[DeliveredFile]] = []
    for f in files:
        if f.extract == "avain" and jobs and jobs[-1][0].extract == "avain" and len(jobs[-1]) < SMALL_FILES:
            jobs[-1].append(f)
        else:
            jobs.append([f])
    return jobs


def _prepared(todo: list[DeliveredFile], unchanged: dict[Path, str], config: EvaluationConfig,
              identities: IdentityCodes, run_id: str, *, allow_empty: bool = False) -> Iterator[Prepared]:
    """Each file read, hashed, checked and split into staged and quarantined rows, in order, ahead of the caller.

    A file whose SHA-256 is its entry in ``unchanged`` (by path) is not checked: it is already loaded.

    ``WORKERS`` threads prepare the next files (or groups of small files) while
    the caller writes the current one to DuckDB (polars and DuckDB both release
    the GIL), so both cores stay busy; ``identities`` serialises its own updates.
    The writer has the most work of the three threads: everything but the insert is done here.
    """

    def prepare(job: list[DeliveredFile]) -> list[Prepared]:
        done: dict[int, Prepared] = {}
        fresh: list[tuple[int, DeliveredFile, str, bytes]] = []
        for i, f in enumerate(job):
            try:
                data = f.path.read_bytes()
            except OSError as exc:
                result = FileResult(f.name, f.extract)
                result.file_rule, result.detail = _unreadable(exc)
                done[i] = (f, "", result, None)
                continue
            sha = hashlib.sha256(data).hexdigest()
            if unchanged.get(f.path) == sha:
                done[i] = (f, sha, None, None)
            else:
                fresh.append((i, f, sha, data))
        if fresh:
            checked = check_files([f for _, f, _, _ in fresh], config, datas=[d for *_, d in fresh],
                                  identities=identities, allow_empty=allow_empty)
            for (i, f, sha, _), (result, rows) in zip(fresh, checked, strict=True):
                done[i] = (f, sha, result, None if rows is None else _split(f, rows, run_id))
        return [done[i] for i in range(len(job))]

    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="kokeilu-load") as pool:
        ahead: deque[Future[list[Prepared]]] = deque()
        jobs = iter(_jobs(todo))
        for job in itertools.islice(jobs, WORKERS):
            ahead.append(pool.submit(prepare, job))
        while ahead:
            current = ahead.popleft()
            following = next(jobs, None)
            if following is not None:
                ahead.append(pool.submit(prepare, following))
            yield from current.result()


def _split(f: DeliveredFile, checked: pl.DataFrame, run_id: str) -> _Rows:
    """A checked file's valid rows, typed, with the columns staging is built from; its other rows for quarantine."""
    valid = pl.col("rule").is_null()
    staged = staging_types(f.extract, checked.filter(valid))
    return _Rows(staged.select(*STAGED_INPUT[f.extract], pl.lit(f.name, dtype=pl.String).alias("source_file")),
                 _quarantine_rows(checked.filter(~valid), f, run_id))


def _progress(items: Iterator[Prepared], total: int, show: bool) -> Iterator[Prepared]:
    if not show or total < 2:
        return items
    from rich.progress import track

    return iter(track(items, total=total, description="loading", transient=True))


BATCH_ROWS = 250_000
"""Rows of checked files gathered before they are written in one transaction."""

TABLES = {"kela": "kela_income_support", "avain": "avain_assessments"}


def _replaces(extract: str, name: str, period: str) -> tuple[str, str]:
    """What a loaded file replaces: a Kela-style file its benefit month, an AVAIN-style file its namesake."""
    return (extract, period) if extract == "kela" else (extract, name)


class _Writer:
    """Writes checked files to DuckDB: several files per transaction, one insert per table.

    Each file replaces, in the transaction that brings it, whatever it re-delivers
    (the month's rows, for a Kela-style file), so a file is atomic however the
    files are grouped; a transaction is committed once ``BATCH_ROWS`` rows are
    gathered, before a file would replace another of the same batch, and at the end.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, run_id: str, *, present: set[tuple[str, str]]) -> None:
        self.con = con
        self.run_id = run_id
        self.present = present  # what is in staging now and would have to be deleted first
        self.pending: list[tuple[DeliveredFile, FileResult, _Rows | None, str, str | None]] = []
        self.rows = 0

    def add(self, f: DeliveredFile, result: FileResult, rows: _Rows | None, sha: str,
            override: str | None = None) -> None:
        """Queue one checked file (``rows`` is None for a file that broke a file rule; ``override``: the guard
        overridden to load it, and why)."""
        replaces = _replaces(f.extract, f.name, f.period)
        if rows is not None and any(_replaces(p.extract, p.name, p.period) == replaces
                                    for p, _, r, *_ in self.pending if r is not None):
            self.flush()
        self.pending.append((f, result, rows, sha, override))
        self.rows += result.rows_in
        if self.rows >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the queued files in one transaction."""
        if not self.pending:
            return
        now = dt.datetime.now(dt.UTC)
        con = self.con
        staged: dict[str, list[pl.DataFrame]] = {"kela": [], "avain": []}
        quarantined: dict[str, list[pl.DataFrame]] = {"kela": [], "avain": []}
        manifest, validation = [], []
        with _db.transaction(con):
            for f, result, rows, sha, override in self.pending:
                validation.extend(_validation_rows(self.run_id, now, f, result))
                if rows is None:
                    continue
                replaces = _replaces(f.extract, f.name, f.period)
                if replaces in self.present:
                    _delete_earlier(con, f)
                self.present.add(replaces)
                staged[f.extract].append(rows.staged)
                quarantined[f.extract].append(rows.quarantined)
                manifest.append((f.extract, f.name, f.period, sha, result.rows_in, result.rows_staged,
                                 result.rows_quarantined, now, self.run_id, override))
            for extract, table in TABLES.items():
                _insert(con, STAGING_INSERT[extract], staged[extract])
                _insert(con, f"insert into quarantine.{table} by name select * from _rows", quarantined[extract])
            _insert(con, "insert into meta.loaded_files by name select * from _rows",
                    [pl.DataFrame(manifest, schema=MANIFEST_SCHEMA, orient="row")])
            _insert(con, "insert into meta.validation_results by name select * from _rows",
                    [pl.DataFrame(validation, schema=VALIDATION_SCHEMA, orient="row")])
        self.pending.clear()
        self.rows = 0


def _delete_earlier(con: duckdb.DuckDBPyConnection, f: DeliveredFile) -> None:
    """Remove what a file re-delivers: rows in staging and quarantine, and its manifest entry."""
    table = TABLES[f.extract]
    if f.extract == "kela":
        con.execute(f"delete from staging.{table} where tilastokuukausi = ? or source_file = ?", [f.file_month, f.name])
        con.execute(f"delete from quarantine.{table} where source_file in "
                    f"(select file_name from meta.loaded_files where extract = 'kela' and period = ?) "
                    f"or source_file = ?", [f.period, f.name])
        con.execute("delete from meta.loaded_files where extract = 'kela' and period = ?", [f.period])
    else:
        con.execute(f"delete from staging.{table} where source_file = ?", [f.name])
        con.execute(f"delete from quarantine.{table} where source_file = ?", [f.name])
        con.execute("delete from meta.loaded_files where extract = 'avain' and file_name = ?", [f.name])


def _insert(con: duckdb.DuckDBPyConnection, sql: str, frames: list[pl.DataFrame]) -> None:
    """Run an insert that reads ``_rows`` over the rows of ``frames``, in one statement."""
    frames = [f for f in frames if f.height]
    if not frames:
        return
    # Arrow's string views (polars' own layout) are cheaper for DuckDB to take in than offset strings
    rows = pl.concat(frames, how="vertical").to_arrow(compat_level=pl.CompatLevel.newest())
    if "_key_hi" in rows.column_names:
        if rows["_key_hi"].null_count:
            raise RuntimeError("a row without person_key reached staging")  # only valid codes are staged
        keys = person_keys(rows["_key_hi"].to_numpy(), rows["_key_lo"].to_numpy())
        rows = rows.drop_columns(["_key_hi", "_key_lo"]).append_column("_person_key", keys)
    con.register("_rows", rows)
    try:
        con.execute(sql).fetchall()
    finally:
        con.unregister("_rows")


def person_keys(hi: np.ndarray, lo: np.ndarray) -> pa.ExtensionArray:
    """``person_key`` from its halves (the first and last 8 bytes, big-endian) as Arrow's UUID type, which
    DuckDB reads as ``UUID`` uncast: the 16 bytes of each key side by side, no copy per value."""
    raw = np.empty((len(hi), 2), dtype=">u8")
    raw[:, 0], raw[:, 1] = hi, lo
    storage = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(hi), [None, pa.py_buffer(raw)])
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)


MANIFEST_SCHEMA = {"extract": pl.String, "file_name": pl.String, "period": pl.String, "sha256": pl.String,
                   "rows_in": pl.Int64, "rows_staged": pl.Int64, "rows_quarantined": pl.Int64,
                   "loaded_at": pl.Datetime("us", "UTC"), "run_id": pl.String, "override_reason": pl.String}
VALIDATION_SCHEMA = {"run_id": pl.String, "checked_at": pl.Datetime("us", "UTC"), "source": pl.String,
                     "check_name": pl.String, "target": pl.String, "passed": pl.Boolean, "observed": pl.Int64,
                     "unexpected": pl.Int64, "detail": pl.String}


KELA_TYPED = {"kotitaloustyyppi": pl.Int8, "tyomarkkina_asema": pl.Int8, "perusosan_alennus_pct": pl.Int8,
              "ohjaus_sosiaalityohon": pl.Int8, "perusosa_eur": pl.Decimal(12, 2), "myonnetty_eur": pl.Decimal(12, 2)}
"""Kela-style columns typed by polars, in the worker thread, before the staging insert."""


def staging_types(extract: str, checked: pl.DataFrame) -> pl.DataFrame:
    """``checked`` with the typed values a Kela-style row enters staging with (``_t_`` columns, ``_month``,
    ``_birth_year``); AVAIN-style rows are typed by DuckDB as they are inserted.

    Typing here, beside the checks, leaves the DuckDB insert (which casts text on
    one thread) half the work. Casts are lenient: a row that breaks a rule gets
    nulls it never uses; a valid row's values are those DuckDB's casts give
    (``tests/pipeline/load/test_properties.py`` holds the two to each other).
    """
    if extract != "kela":
        return checked
    typed = []
    for name, dtype in KELA_TYPED.items():
        text = pl.col(name).str.strip_prefix("+")
        if dtype == pl.Int8:
            typed.append(text.cast(pl.Int8, strict=False).alias(f"_t_{name}"))
        else:
            typed.append(text.str.replace(",", ".", literal=True).cast(dtype, strict=False).alias(f"_t_{name}"))
    return checked.with_columns(
        *typed, pl.col("_birth_date").dt.year().cast(pl.Int32).alias("_birth_year"),
        (pl.col("tilastokuukausi") + "01").str.to_date("%Y%m%d", strict=False).alias("_month"))


STAGED_INPUT: dict[str, list[str]] = {
    "kela": ["_key_hi", "_key_lo", "_birth_date", "_birth_year", "_sex", "kotitalous_id", "kuntanumero", "_month",
             "tilastokuukausi", *(f"_t_{c}" for c in KELA_TYPED), "source_line"],
    "avain": ["_key_hi", "_key_lo", "_birth_date", "_sex", *(c.name for c in COLUMNS["avain"] if c.name != "hetu"),
              "source_line"],
}
"""The columns of a checked frame that staging is built from: never the identity code."""

STAGING_INSERT: dict[str, str] = {
    "kela": f"""
        insert into staging.kela_income_support (
            person_key, birth_date, birth_year, sex, kotitalous_id, kuntanumero, month, tilastokuukausi,
            {", ".join(KELA_TYPED)}, source_file, source_line)
        select
            _person_key, _birth_date, _birth_year, _sex, kotitalous_id, kuntanumero, _month, tilastokuukausi,
            {", ".join(f"_t_{c}" for c in KELA_TYPED)}, source_file, source_line
        from _rows""",
    "avain": """
        insert into staging.avain_assessments (
            person_key, birth_year, sex, kuntanumero, arviointipvm, arviointikerta, tavoitealue, tilannearvio,
            tavoitteen_saavutus, tilannetekijat, palvelut, menetelmat, asiakas_lasna, source_file, source_line)
        select
            _person_key, year(_birth_date), _sex, kuntanumero, arviointipvm::date, arviointikerta::integer,
            tavoitealue, tilannearvio::tinyint, nullif(tavoitteen_saavutus, '')::tinyint, tilannetekijat,
            palvelut, menetelmat, asiakas_lasna::tinyint, source_file, source_line
        from _rows""",
}
"""Typing of valid rows, done by DuckDB as they enter staging (every value already passed its rule)."""


def _quarantine_rows(bad: pl.DataFrame, f: DeliveredFile, run_id: str) -> pl.DataFrame:
    columns = [c.name for c in COLUMNS[f.extract]]
    masked = bad.with_columns(
        pl.col("hetu").map_elements(mask_hetu, return_dtype=pl.String).alias("hetu"),
    )
    raw = masked.select(pl.struct(columns).struct.json_encode().alias("raw"))
    details = [_detail(rule, rules) for rule, rules in bad.select("rule", "rules").iter_rows()]
    return pl.DataFrame({
        "source_file": pl.Series([f.name] * bad.height, dtype=pl.String),
        "source_line": bad["source_line"],
        "rule": bad["rule"],
        "detail": pl.Series(details, dtype=pl.String),
        "raw": raw["raw"],
        "run_id": pl.Series([run_id] * bad.height, dtype=pl.String),
    })


def _validation_rows(run_id: str, now: dt.datetime, f: DeliveredFile, result: FileResult) -> list[tuple]:
    """The rows of ``meta.validation_results`` for one file: every contract rule, and the row accounting."""
    rows: list[tuple] = []
    if result.file_rule:
        rows.append((run_id, now, "contract", result.file_rule, f.name, False, 0, None, result.detail))
        return rows
    for rule in rules_for(f.extract):
        if rule.scope == "file":
            rows.append((run_id, now, "contract", rule.code, f.name, True, result.rows_in, 0, rule.description))
            continue
        n = result.by_rule.get(rule.code, 0)
        rows.append((run_id, now, "contract", rule.code, f.name, n == 0, result.rows_in, n, rule.description))
    rows.append((run_id, now, "contract", "row_accounting", f.name,
                 result.rows_in == result.rows_staged + result.rows_quarantined, result.rows_in,
                 result.rows_quarantined,
                 f"rows in {result.rows_in} = staged {result.rows_staged} + quarantined {result.rows_quarantined}"))
    if result.extra_columns:
        rows.append((run_id, now, "contract", "extra_columns", f.name, True, result.rows_in, 0,
                     f"unknown columns ignored downstream: {', '.join(result.extra_columns)}"))
    return rows


__all__ = ["REFUSALS", "FileResult", "ValidationReport", "check_file", "check_files", "load_delivery",
           "load_deliveries", "refusals", "validate_delivery"]
