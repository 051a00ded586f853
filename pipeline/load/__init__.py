"""Loading deliveries into DuckDB: contract checks, pseudonymisation, quarantine, manifest.

Every delivered file goes through the same steps:

1. :func:`~pipeline.load.files.read_rows` reads it into raw text fields (or names
   the file rule it breaks: the file is then reported and nothing of it loaded);
2. :func:`~pipeline.load.checks.broken_rules` applies the contract's row and set
   rules, vectorised;
3. valid rows are typed, the identity code becomes ``person_key`` (HMAC-SHA-256)
   after birth date and sex are derived from it, and the code is dropped;
   rejected rows keep their raw fields with the identity code masked;
4. in one transaction: the file's earlier rows (a re-delivery) leave staging and
   quarantine, the new rows enter, the manifest ``meta.loaded_files`` and the
   per-rule counts in ``meta.validation_results`` are written.

A file whose name and SHA-256 are already in the manifest is skipped: loading
the same delivery twice changes nothing. Rows in = rows staged + rows quarantined
for every file, always.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipeline import db as _db
from pipeline.errors import InputError
from pipeline.load.checks import broken_rules, cents, hetu_parts
from pipeline.load.files import DeliveredFile, FileRuleBroken, classify, looks_like_delivery, read_rows
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


def check_file(f: DeliveredFile, config: EvaluationConfig) -> tuple[FileResult, pl.DataFrame | None]:
    """Read and check one file: its result, and its rows with ``rule`` (null = valid)."""
    result = FileResult(f.name, f.extract)
    try:
        raw = read_rows(f)
    except FileRuleBroken as exc:
        result.file_rule, result.detail = exc.rule, exc.detail
        return result, None
    except OSError as exc:
        result.file_rule, result.detail = "file_unreadable", f"cannot read the file: {exc.strerror or exc}"
        return result, None
    checked = broken_rules(raw.frame, f.extract, _context(f, config))
    bad = checked.filter(pl.col("rule").is_not_null())
    result.rows_in = checked.height
    result.rows_quarantined = bad.height
    result.rows_staged = checked.height - bad.height
    result.by_rule = {r: int(n) for r, n in bad.group_by("rule").len().iter_rows()}
    result.extra_columns = raw.extra_columns
    result.violations = [
        {"line": int(line), "rule": rule, "detail": _detail(rule, rules)}
        for line, rule, rules in bad.select("source_line", "rule", "rules").sort("source_line").iter_rows()
    ]
    return result, checked


def _detail(rule: str, rules: list[str] | None) -> str:
    from schemas.rules import RULES

    text = f"breaks: {RULES[rule].description}"
    others = [r for r in (rules or []) if r != rule]
    if others:
        text += f" (also {', '.join(others)})"
    return text


def validate_delivery(directory: Path, *, config: EvaluationConfig) -> ValidationReport:
    """Check every extract in a directory against the contracts, without loading anything."""
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
    for f in files:
        report.files.append(check_file(f, config)[0])
    return report


# ---------------------------------------------------------------------- loading
def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the manifest, validation, staging and quarantine tables if missing."""
    for name in _db.STAGING_MODELS:
        _db.execute_file(con, name)


def load_delivery(con: duckdb.DuckDBPyConnection, *, kela_dir: Path | None, avain_dir: Path | None, key: bytes,
                  config: EvaluationConfig, run_id: str, progress: bool = False) -> ValidationReport:
    """Load the Kela-style and AVAIN-style files of a delivery into staging, incrementally."""
    from pipeline.pseudonym import Pseudonymiser

    ensure_tables(con)
    pseudonymiser = Pseudonymiser(key)
    report = ValidationReport()
    dirs = [d for d in dict.fromkeys([kela_dir, avain_dir]) if d is not None]
    for d in dirs:
        if not Path(d).is_dir():
            raise InputError(f"{d} is not a directory")
    todo: list[DeliveredFile] = []
    for d in dirs:
        files, bad = discover(Path(d))
        report.files.extend(bad)
        todo.extend(files)
    loaded = {(e, n): s for e, n, s in con.execute("select extract, file_name, sha256 from meta.loaded_files").fetchall()}
    for f in _progress(todo, progress):
        sha = _db.sha256_file(f.path)
        if loaded.get((f.extract, f.name)) == sha:
            prev = con.execute("select rows_in, rows_staged, rows_quarantined from meta.loaded_files "
                               "where extract = ? and file_name = ?", [f.extract, f.name]).fetchall()[0]
            report.files.append(FileResult(f.name, f.extract, rows_in=prev[0], rows_staged=prev[1],
                                           rows_quarantined=prev[2], skipped=True))
            continue
        result, checked = check_file(f, config)
        report.files.append(result)
        _record_file(con, f, result, checked, sha=sha, run_id=run_id, pseudonymiser=pseudonymiser)
    return report


def _progress(items: list[DeliveredFile], show: bool):  # noqa: ANN202
    if not show or len(items) < 2:
        return items
    from rich.progress import track

    return track(items, description="loading", transient=True)


def _record_file(con: duckdb.DuckDBPyConnection, f: DeliveredFile, result: FileResult, checked: pl.DataFrame | None,
                 *, sha: str, run_id: str, pseudonymiser: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    with _db.transaction(con):
        if checked is None:
            _validation_rows(con, run_id, now, f, result)
            return
        staged = _staged_rows(checked.filter(pl.col("rule").is_null()).with_columns(pl.lit(f.name).alias("source_file")),
                              f.extract, pseudonymiser)
        quarantined = _quarantine_rows(checked.filter(pl.col("rule").is_not_null()), f, result, run_id)
        table = "kela_income_support" if f.extract == "kela" else "avain_assessments"
        if f.extract == "kela":
            con.execute(f"delete from staging.{table} where tilastokuukausi = ? or source_file = ?",
                        [f.file_month, f.name])
            con.execute(f"delete from quarantine.{table} where source_file in "
                        f"(select file_name from meta.loaded_files where extract = 'kela' and period = ?) "
                        f"or source_file = ?", [f.period, f.name])
            con.execute("delete from meta.loaded_files where extract = 'kela' and period = ?", [f.period])
        else:
            con.execute(f"delete from staging.{table} where source_file = ?", [f.name])
            con.execute(f"delete from quarantine.{table} where source_file = ?", [f.name])
            con.execute("delete from meta.loaded_files where extract = 'avain' and file_name = ?", [f.name])
        if staged.height:
            con.register("_staged", staged.to_arrow())
            con.execute(f"insert into staging.{table} ({', '.join(staged.columns)}) select * from _staged")
            con.unregister("_staged")
        if quarantined.height:
            con.register("_quarantined", quarantined.to_arrow())
            con.execute(f"insert into quarantine.{table} ({', '.join(quarantined.columns)}) "
                        f"select * from _quarantined")
            con.unregister("_quarantined")
        con.execute("insert into meta.loaded_files values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [f.extract, f.name, f.period, sha, result.rows_in, result.rows_staged, result.rows_quarantined,
                     now, run_id])
        _validation_rows(con, run_id, now, f, result)


def _staged_rows(valid: pl.DataFrame, extract: str, pseudonymiser: Any) -> pl.DataFrame:
    parts = hetu_parts("hetu")
    keys = pl.Series("person_key", pseudonymiser.keys_of(valid["hetu"].to_list()), dtype=pl.String)
    base = valid.with_columns(parts["birth_date"].alias("birth_date"), parts["sex"].alias("sex")).with_columns(
        pl.col("birth_date").dt.year().alias("birth_year"), keys)
    if extract == "kela":
        return base.select(
            "person_key", "birth_date", "birth_year", "sex", "kotitalous_id", "kuntanumero",
            pl.col("tilastokuukausi").str.to_date("%Y%m").alias("month"), "tilastokuukausi",
            pl.col("kotitaloustyyppi").cast(pl.Int8), pl.col("tyomarkkina_asema").cast(pl.Int8),
            (cents("perusosa_eur").cast(pl.Decimal(14, 0)) / 100).cast(pl.Decimal(12, 2)).alias("perusosa_eur"),
            (cents("myonnetty_eur").cast(pl.Decimal(14, 0)) / 100).cast(pl.Decimal(12, 2)).alias("myonnetty_eur"),
            pl.col("perusosan_alennus_pct").str.strip_prefix("+").cast(pl.Int8),
            pl.col("ohjaus_sosiaalityohon").str.strip_prefix("+").cast(pl.Int8),
            "source_file", "source_line",
        )
    return base.select(
        "person_key", "birth_year", "sex", "kuntanumero",
        pl.col("arviointipvm").str.to_date("%Y-%m-%d").alias("arviointipvm"),
        pl.col("arviointikerta").str.strip_prefix("+").cast(pl.Int32), "tavoitealue",
        pl.col("tilannearvio").str.strip_prefix("+").cast(pl.Int8),
        pl.when(pl.col("tavoitteen_saavutus") == "").then(None)
        .otherwise(pl.col("tavoitteen_saavutus").str.strip_prefix("+")).cast(pl.Int8).alias("tavoitteen_saavutus"),
        "tilannetekijat", "palvelut", "menetelmat",
        pl.col("asiakas_lasna").str.strip_prefix("+").cast(pl.Int8), "source_file", "source_line",
    )


def _quarantine_rows(bad: pl.DataFrame, f: DeliveredFile, result: FileResult, run_id: str) -> pl.DataFrame:
    columns = [c.name for c in COLUMNS[f.extract]]
    masked = bad.with_columns(
        pl.col("hetu").map_elements(mask_hetu, return_dtype=pl.String).alias("hetu"),
    )
    raw = masked.select(pl.struct(columns).struct.json_encode().alias("raw"))
    details = [_detail(rule, rules) for rule, rules in bad.select("rule", "rules").iter_rows()]
    return pl.DataFrame({
        "source_file": [f.name] * bad.height,
        "source_line": bad["source_line"],
        "rule": bad["rule"],
        "detail": pl.Series(details, dtype=pl.String),
        "raw": raw["raw"],
        "run_id": [run_id] * bad.height,
    })


def _validation_rows(con: duckdb.DuckDBPyConnection, run_id: str, now: dt.datetime, f: DeliveredFile,
                     result: FileResult) -> None:
    rows = []
    if result.file_rule:
        rows.append((run_id, now, "contract", result.file_rule, f.name, False, 0, None, result.detail))
    else:
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
    frame = pl.DataFrame(rows, schema={"run_id": pl.String, "checked_at": pl.Datetime("us", "UTC"),
                                       "source": pl.String, "check_name": pl.String, "target": pl.String,
                                       "passed": pl.Boolean, "observed": pl.Int64, "unexpected": pl.Int64,
                                       "detail": pl.String}, orient="row")
    con.register("_validation", frame.to_arrow())
    con.execute("insert into meta.validation_results select * from _validation")
    con.unregister("_validation")


__all__ = ["FileResult", "ValidationReport", "check_file", "load_delivery", "validate_delivery"]
