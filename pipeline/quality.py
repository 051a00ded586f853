"""Great Expectations suites on the staged tables: what single rows can't tell.

The row contracts (``staging`` loaders) judge one row at a time. This module
checks properties of whole tables: compound keys are unique, key columns are
filled, values sit in their ranges and code sets, and the monthly volume of the
Kela-style extract is plausible against its neighbouring months.

Design
------
* Great Expectations 1.x validates **pandas** frames here. Its DuckDB SQL data
  source is broken (results are read after the connection closes) and it takes
  no polars frames, so frames come from ``con.sql(...).df()``, holding only the
  columns the suite needs.
* Memory stays bounded at national scale (≈13 M rows): the row-level
  expectations (uniqueness, not-null, ranges, code sets) run in GX on the
  table's frame only when the table has at most ``max_frame_rows`` rows
  (default 2,000,000). Above that the *same* checks run as DuckDB aggregate
  count queries and are recorded under the *same* check names, so a run on
  test data and a run on national data fill ``meta.validation_results`` alike.
  The Data Docs list them too, as run in DuckDB. Uniqueness is
  screened on 64-bit hashes in one scan and recounted exactly only when the
  screen flags a group; the DuckDB-side checks run in a worker thread on a
  cursor of their own while GX is imported and runs its suites.
* Volume checks always run in GX, on small per-month aggregate frames computed
  in DuckDB (one row per month): the ratio of each month's row count to the
  median of its calendar neighbours (previous and next month; a month missing
  in between counts 0 rows) must lie in [0.5, 2.0], and the share of rows with
  a reduced basic amount (``perusosan_alennus_pct > 0``) must lie in [0, 0.10].
* A table that does not exist or is empty is skipped and records nothing.
* Every expectation result is written to ``meta.validation_results`` with
  ``source = 'expectation'`` and ``check_name`` = expectation type plus its
  columns, e.g. ``expect_compound_columns_to_be_unique(person_key,month)``.
* A run (``kokeilu run``) hands the suites to :class:`pipeline.evaluation.PendingSuites`:
  the frames and the DuckDB-side checks are read once the delivery is loaded
  (:func:`prepare_suites`), GX runs them in a child process of lower priority
  (``python -m pipeline.quality``, :func:`run_suites`) beside the panels and the
  estimation, and the outcomes are recorded (:func:`record_suites`) before the run
  is marked completed. :func:`run_quality_checks` does all three here and now.
* GX works in a throw-away File data context in a temporary directory (nothing
  lands in the current working directory). Analytics and progress bars are
  switched off; ``great_expectations`` is imported lazily, inside
  :func:`run_quality_checks`.
* The Data Docs are kokeilu's own static pages (:mod:`pipeline.data_docs`),
  written by :func:`record_suites` into ``docs_dir`` once the outcomes are
  known, the DuckDB-side checks of large tables included: GX's own site loads
  its scripts and styles from public CDNs and shows no result offline, so it
  is not built. The pages print counts, never values read from the data; GX's
  examples of unexpected values are kept in ``meta.validation_results`` except
  for checks on the pseudonymised ``person_key``, whose values are never
  recorded.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from pipeline import db as _db
from pipeline.data_docs import ExpectationResult, SuiteResult, write_site
from pipeline.db import execute_file
from pipeline.report import DEFAULT_MIN_CELL_PERSONS

MAX_FRAME_ROWS = 2_000_000
"""Largest table whose row-level expectations run in GX on a pandas frame."""

SOURCE = "expectation"
KELA = "staging.kela_income_support"
AVAIN = "staging.avain_assessments"
IDENTIFYING_COLUMNS = frozenset({"person_key"})
"""Columns whose values are never recorded as examples of unexpected values."""


@dataclass(frozen=True)
class Check:
    """One expectation: its GX type, columns and keyword arguments."""

    kind: str
    columns: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The check name recorded in ``meta.validation_results``."""
        return f"{self.kind}({','.join(self.columns)})"


@dataclass(frozen=True)
class Outcome:
    """The result of one check, ready for ``meta.validation_results``."""

    check_name: str
    target: str
    passed: bool
    observed: int | None
    unexpected: int | None
    detail: str
    checked_at: dt.datetime
    error: bool = False  # the check could not be evaluated (GX raised)


def _unique(*cols: str) -> Check:
    return Check("expect_compound_columns_to_be_unique", cols, {"column_list": list(cols)})


def _not_null(col: str) -> Check:
    return Check("expect_column_values_to_not_be_null", (col,), {"column": col})


def _between(col: str, lo: float, hi: float) -> Check:
    return Check("expect_column_values_to_be_between", (col,), {"column": col, "min_value": lo, "max_value": hi})


def _in_set(col: str, values: Sequence[Any]) -> Check:
    return Check("expect_column_values_to_be_in_set", (col,), {"column": col, "value_set": list(values)})


ROW_CHECKS: dict[str, tuple[Check, ...]] = {
    KELA: (
        _unique("person_key", "month"),
        _not_null("person_key"),
        _not_null("month"),
        _between("myonnetty_eur", 0, 100_000),
        _in_set("perusosan_alennus_pct", (0, 20, 40)),
        _in_set("sex", ("M", "F")),
    ),
    AVAIN: (
        _unique("person_key", "arviointipvm", "tavoitealue"),
        _not_null("person_key"),
        _not_null("arviointipvm"),
        _not_null("tavoitealue"),
        _between("tilannearvio", 0, 10),
        _between("tavoitteen_saavutus", 1, 5),
        _in_set("asiakas_lasna", (0, 1)),
    ),
}
"""Row-level expectations per staged table (GX on a frame, or DuckDB counts when large)."""

MONTH_CHECKS: tuple[Check, ...] = (
    _between("rows_to_neighbour_median", 0.5, 2.0),
    _between("share_alennus", 0.0, 0.10),
)
"""Expectations on the per-month aggregate frame of the Kela-style table."""

MONTHLY_SQL = f"""
with counts as (
    select month, count(*) as n_rows, count(*) filter (where perusosan_alennus_pct > 0) as n_alennus
    from {KELA} group by month
),
months as (
    select cast(m as date) as month
    from range((select min(month) from counts), (select max(month) from counts) + interval 1 month,
               interval 1 month) as r(m)
),
filled as (
    select months.month, coalesce(n_rows, 0) as n_rows, coalesce(n_alennus, 0) as n_alennus
    from months left join counts using (month)
),
neigh as (
    select *, lag(n_rows) over (order by month) as prev_rows, lead(n_rows) over (order by month) as next_rows
    from filled
)
select month, n_rows, n_alennus,
       case when prev_rows is null and next_rows is null then null
            when coalesce((prev_rows + next_rows) / 2.0, prev_rows, next_rows) = 0
                 then case when n_rows = 0 then 1.0 else 'Infinity'::double end
            else n_rows / coalesce((prev_rows + next_rows) / 2.0, prev_rows, next_rows) end
           as rows_to_neighbour_median,
       case when n_rows = 0 then null else n_alennus / n_rows::double end as share_alennus
from neigh order by month
"""
"""Rows per calendar month with the ratio to its neighbours' median and the reduction share."""


# --------------------------------------------------------------------------- DuckDB side


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> int:
    """The single integer a query returns (0 for NULL); the result is fully consumed.

    DuckDB 2.x refuses further work on a connection whose last result is unfinished,
    so this uses ``fetchall`` rather than ``fetchone``.
    """
    rows = con.execute(sql, params or []).fetchall()
    return int(rows[0][0] or 0) if rows else 0


def _row_count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    """Rows in a ``schema.table``; 0 when the table does not exist."""
    schema, name = table.split(".")
    exists = _scalar(
        con, "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
    )
    return _scalar(con, f"select count(*) from {table}") if exists else 0


def _unexpected_sql(table: str, check: Check) -> tuple[str, list[Any]]:
    """A query (and its bound parameters) counting the rows that break a not-null, range or code-set check.

    It counts the rows GX would count: for ranges and code sets only non-null
    values. Each is a single filtered count, which DuckDB answers from column
    statistics and NOT NULL constraints where it can, so separate small queries
    beat one combined scan. Table and column names come from this module's
    constants; values are bound.
    """
    col = check.columns[0]
    if check.kind == "expect_column_values_to_not_be_null":
        return f"select count(*) from {table} where {col} is null", []
    if check.kind == "expect_column_values_to_be_between":
        lo, hi = check.kwargs["min_value"], check.kwargs["max_value"]
        return f"select count(*) from {table} where {col} < ? or {col} > ?", [lo, hi]
    if check.kind == "expect_column_values_to_be_in_set":
        values = list(check.kwargs["value_set"])
        marks = ", ".join("?" * len(values))
        return f"select count(*) from {table} where {col} is not null and {col} not in ({marks})", values
    raise ValueError(f"no DuckDB form for {check.kind}: expected unique, not-null, between or in-set")


def _duplicated_rows(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str]) -> int:
    """Rows in duplicated key groups, counted as GX does (every row of such a group)."""
    return _db.duplicate_counts(con, table, columns)[0]


def _unexpected(con: duckdb.DuckDBPyConnection, table: str, check: Check) -> int:
    """Rows of ``table`` that break ``check``, counted in DuckDB."""
    if check.kind == "expect_compound_columns_to_be_unique":
        return _duplicated_rows(con, table, check.columns)
    return _scalar(con, *_unexpected_sql(table, check))


def _describe(check: Check) -> str:
    """What a check asserts, in a few words."""
    kw = check.kwargs
    if check.kind == "expect_column_values_to_be_between":
        return f"{check.columns[0]} between {kw['min_value']} and {kw['max_value']}"
    if check.kind == "expect_column_values_to_be_in_set":
        return f"{check.columns[0]} in {{{', '.join(map(str, kw['value_set']))}}}"
    if check.kind == "expect_column_values_to_not_be_null":
        return f"{check.columns[0]} not null"
    return f"({', '.join(check.columns)}) unique"


def _duckdb_outcomes(con: duckdb.DuckDBPyConnection, table: str, checks: Sequence[Check], n_rows: int) -> list[Outcome]:
    """Run row-level checks as DuckDB count queries (for tables too large for a frame)."""
    out = []
    for check in checks:
        unexpected = _unexpected(con, table, check)
        out.append(Outcome(
            check.name, table, unexpected == 0, n_rows, unexpected,
            f"{_describe(check)}: {unexpected} of {n_rows} rows unexpected (DuckDB aggregate, table > frame limit)",
            dt.datetime.now(dt.UTC),
        ))
    return out


def _frame(con: duckdb.DuckDBPyConnection, table: str, checks: Sequence[Check]) -> pd.DataFrame:
    """The columns the checks need, as a pandas frame (decimals as doubles)."""
    cols = sorted({c for check in checks for c in check.columns})
    types = _db.column_types(con, table)
    select = ", ".join(f"cast({c} as double) as {c}" if types.get(c, "").startswith("DECIMAL") else c for c in cols)
    return con.sql(f"select {select} from {table}").df()


def _record(con: duckdb.DuckDBPyConnection, run_id: str, outcomes: Sequence[Outcome]) -> None:
    """Insert the outcomes into ``meta.validation_results``."""
    if not outcomes:
        return
    con.executemany(
        "insert into meta.validation_results (run_id, checked_at, source, check_name, target, passed, "
        "observed, unexpected, detail) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [[run_id, o.checked_at, SOURCE, o.check_name, o.target, o.passed, o.observed, o.unexpected, o.detail]
         for o in outcomes],
    )


# --------------------------------------------------------------------------- GX side


class _Gx:
    """A throw-away GX File data context in a temporary directory, for pandas frames."""

    def __init__(self, root: Path) -> None:
        gx = _import_gx()
        self.gx = gx
        self.context = gx.get_context(mode="file", project_root_dir=str(root))
        self._silence_progress_bars()
        self.source = self.context.data_sources.add_pandas(name="kokeilu_frames")

    def _silence_progress_bars(self) -> None:
        try:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            self.context.variables.save()
        except Exception:  # noqa: BLE001 - cosmetic only; never fail a run over progress bars
            pass

    def validate(self, name: str, frame: pd.DataFrame, checks: Sequence[Check], target: str, unit: str) -> list[Outcome]:
        """Validate ``frame`` against ``checks`` as suite ``name``; the outcomes.

        GX's Data Docs are not built (see the module docstring): the outcomes
        are returned and :func:`record_suites` writes kokeilu's own pages.
        """
        gx = self.gx
        suite = self.context.suites.add(gx.ExpectationSuite(name=name))
        for check in checks:
            suite.add_expectation(_expectation(gx, check))
        asset = self.source.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(name=f"{name}_whole")
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        checkpoint = self.context.checkpoints.add(gx.Checkpoint(
            name=f"{name}_checkpoint", validation_definitions=[definition], result_format="SUMMARY",
        ))
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        outcomes: list[Outcome] = []
        for run_result in result.run_results.values():
            outcomes.extend(_outcome(r, target, unit) for r in run_result.results)
        return outcomes


def _import_gx() -> Any:
    """``great_expectations``, analytics off (lazy: a slow import, only needed here)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def _expectation(gx: Any, check: Check) -> Any:
    """The GX expectation object for a check."""
    camel = "".join(part.capitalize() for part in check.kind.split("_"))
    return getattr(gx.expectations, camel)(**check.kwargs)


def _raised(info: Any) -> str | None:
    """The first line of an exception GX caught while evaluating, if any.

    ``exception_info`` is either one ``{raised_exception, exception_message, ...}``
    dict or a dict of them keyed by metric.
    """
    if not isinstance(info, dict):
        return None
    candidates = [info] + [v for v in info.values() if isinstance(v, dict)]
    for item in candidates:
        if item.get("raised_exception"):
            message = str(item.get("exception_message") or "unknown error").strip()
            return (message.splitlines() or ["unknown error"])[0][:200]
    return None


def _outcome(result: Any, target: str, unit: str) -> Outcome:
    """Turn one GX expectation result into an :class:`Outcome`."""
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    cols = kwargs.get("column_list") or [kwargs.get("column")]
    check_name = f"{config.type}({','.join(str(c) for c in cols)})"
    stats = result.result or {}
    observed = stats.get("element_count")
    unexpected = stats.get("unexpected_count")
    error = _raised(result.exception_info)
    if error is not None:
        detail = f"GX raised: {error}"
    else:
        # values of an identifying column are not kept, not even pseudonymised ones, as examples
        sample = [] if IDENTIFYING_COLUMNS & {str(c) for c in cols} else stats.get("partial_unexpected_list") or []
        shown = ", ".join(str(v) for v in sample[:3])
        detail = (
            f"{unexpected} of {observed} {unit} unexpected"
            + (f"; e.g. {shown}" if shown else "")
            + " (Great Expectations)"
        )
    return Outcome(
        check_name, target, bool(result.success),
        None if observed is None else int(observed),
        None if unexpected is None else int(unexpected),
        " ".join(detail.split()), dt.datetime.now(dt.UTC), error is not None,
    )


# --------------------------------------------------------------------------- entry point


def _large_table_counts(
    pool: ThreadPoolExecutor, con: duckdb.DuckDBPyConnection, table: str, n_rows: int
) -> Future[list[Outcome]]:
    """Start the DuckDB-side row checks of a large table in a worker thread, on a cursor of its own.

    DuckDB releases the GIL while it scans, so the scan runs while this thread
    imports GX and runs the GX suites. The cursor is a second connection to the
    same database and sees committed rows only: when ``con`` holds rows the
    cursor cannot see (an open transaction), the checks run here on ``con``.
    """
    cursor = con.cursor()
    if _row_count(cursor, table) != n_rows:
        cursor.close()
        done: Future[list[Outcome]] = Future()
        done.set_result(_duckdb_outcomes(con, table, ROW_CHECKS[table], n_rows))
        return done

    def count() -> list[Outcome]:
        with cursor:
            return _duckdb_outcomes(cursor, table, ROW_CHECKS[table], n_rows)

    return pool.submit(count)


GxInput = tuple[str, pd.DataFrame, tuple[Check, ...], str, str]
"""One suite for GX: its name, the frame, its checks, the table it speaks of and the unit of its rows."""


@dataclass
class Suites:
    """The expectation suites of a database, ready for GX wherever it runs: frames, not a connection."""

    tables: list[str]  # the staged tables with rows, in the order their outcomes are recorded
    gx: list[GxInput] = field(default_factory=list)
    counted: dict[str, list[Outcome]] = field(default_factory=dict)  # DuckDB-side checks of large tables


def _suite_name(table: str) -> str:
    return table.replace(".", "__")


MONTHLY_SUITE = f"{_suite_name(KELA)}__monthly"


def _gx_inputs(con: duckdb.DuckDBPyConnection, tables: Sequence[str], counted: Sequence[str]) -> list[GxInput]:
    """The frames GX validates: the row checks of the tables not counted in DuckDB, the monthly volumes."""
    inputs: list[GxInput] = []
    for table in tables:
        checks = ROW_CHECKS[table]
        if table not in counted:
            inputs.append((_suite_name(table), _frame(con, table, checks), checks, table, "rows"))
        if table == KELA:
            inputs.append((MONTHLY_SUITE, con.sql(MONTHLY_SQL).df(), MONTH_CHECKS, KELA, "months"))
    return inputs


def _staged_sizes(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    counted = {table: _row_count(con, table) for table in ROW_CHECKS}
    return {table: n for table, n in counted.items() if n > 0}


def prepare_suites(con: duckdb.DuckDBPyConnection, *, max_frame_rows: int = MAX_FRAME_ROWS) -> Suites:
    """Everything the suites need from the database: the DuckDB-side checks of large tables are run
    here, the other checks get their frames (see :func:`run_suites`, :func:`record_suites`)."""
    sizes = _staged_sizes(con)
    large = [t for t, n in sizes.items() if n > max_frame_rows]
    return Suites(list(sizes), _gx_inputs(con, list(sizes), large),
                  {t: _duckdb_outcomes(con, t, ROW_CHECKS[t], sizes[t]) for t in large})


def run_suites(inputs: Sequence[GxInput], docs_dir: Path | None = None) -> dict[str, list[Outcome]]:
    """Validate each frame in Great Expectations; the outcomes by suite.

    Needs no database: it can run in another process (:class:`pipeline.evaluation.PendingSuites`).
    ``docs_dir`` is not used (the Data Docs are written by :func:`record_suites`, which knows the run id and
    the DuckDB-side outcomes too); it is accepted so that callers passing it keep working.
    """
    del docs_dir
    out: dict[str, list[Outcome]] = {}
    with tempfile.TemporaryDirectory(prefix="kokeilu-gx-") as tmp:
        gxc = _Gx(Path(tmp))
        for name, frame, checks, target, unit in inputs:
            out[name] = gxc.validate(name, frame, checks, target, unit)
    return out


def record_suites(con: duckdb.DuckDBPyConnection, run_id: str, suites: Suites, by_suite: dict[str, list[Outcome]],
                  docs_dir: Path) -> dict[str, Any]:
    """Write every outcome to ``meta.validation_results`` (table by table, the monthly volumes after the
    Kela-style rows) and the Data Docs into ``docs_dir``; the summary :func:`run_quality_checks` returns."""
    execute_file(con, "meta/validation_results.sql")
    pages: list[tuple[SuiteResult, list[Outcome]]] = []
    for table in suites.tables:
        if table in suites.counted:
            pages.append(_suite_page(_suite_name(table), table, "rows", DUCKDB_ENGINE, suites.counted[table]))
        else:
            pages.append(_suite_page(_suite_name(table), table, "rows", GX_ENGINE, by_suite[_suite_name(table)]))
        if table == KELA:
            pages.append(_suite_page(MONTHLY_SUITE, KELA, "months", GX_ENGINE, by_suite[MONTHLY_SUITE]))
    outcomes = [o for page in pages for o in page[1]]
    _record(con, run_id, outcomes)
    index = write_site(Path(docs_dir), run_id=run_id, suites=[page for page, _ in pages],
                       other_checks=_other_checks(con, run_id), threshold=_disclosure_threshold(con, run_id))
    return {
        "expectations": len(outcomes),
        "failed": sum(not o.passed for o in outcomes),
        "docs": str(index),
    }


GX_ENGINE = "Great Expectations (pandas frame)"
DUCKDB_ENGINE = "DuckDB counts (table above the frame limit)"
_ASSERTIONS = {check.name: _describe(check) for checks in (*ROW_CHECKS.values(), MONTH_CHECKS) for check in checks}


def _suite_page(name: str, target: str, unit: str, engine: str,
                outcomes: list[Outcome]) -> tuple[SuiteResult, list[Outcome]]:
    """A suite's page from its outcomes (and the outcomes themselves, to record)."""
    rows = tuple(
        ExpectationResult(o.check_name, _ASSERTIONS.get(o.check_name, o.check_name), o.passed, o.observed,
                          o.unexpected, o.error)
        for o in outcomes
    )
    return SuiteResult(name, target, unit, engine, rows), outcomes


def _other_checks(con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple[str, int, int]]:
    """(source, checks, failed) of the run's checks recorded before the suites (row contracts, volumes)."""
    rows = con.execute(
        "select source, count(*), count(*) filter (where not passed) from meta.validation_results "
        "where run_id = ? and source <> ? group by source order by source", [run_id, SOURCE],
    ).fetchall()
    return [(str(s), int(n), int(f)) for s, n, f in rows]


def _disclosure_threshold(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """The run's ``disclosure.min_cell_persons`` (from ``meta.runs.config``); the default when unknown."""
    if not _scalar(con, "select count(*) from information_schema.tables "
                        "where table_schema = 'meta' and table_name = 'runs'"):
        return DEFAULT_MIN_CELL_PERSONS
    rows = con.execute("select json_extract(config, '$.disclosure.min_cell_persons')::integer from meta.runs "
                       "where run_id = ?", [run_id]).fetchall()
    return int(rows[0][0]) if rows and rows[0][0] is not None else DEFAULT_MIN_CELL_PERSONS


def run_quality_checks(
    con: duckdb.DuckDBPyConnection, *, run_id: str, docs_dir: Path, max_frame_rows: int = MAX_FRAME_ROWS
) -> dict[str, Any]:
    """Run the expectation suites on the staged tables, record them, build Data Docs.

    Parameters
    ----------
    con
        Open connection holding ``staging.kela_income_support`` and/or
        ``staging.avain_assessments``; a missing or empty table is skipped.
        ``meta.validation_results`` is created if missing.
    run_id
        Run the results are recorded under.
    docs_dir
        Folder that receives the Data Docs (created; its ``index.html`` and
        ``suites/`` are replaced, and a site of Great Expectations' own, written
        by an earlier version, is removed; see :mod:`pipeline.data_docs`).
    max_frame_rows
        Largest table whose row-level expectations run in GX on a pandas
        frame; larger tables get the same checks as DuckDB count queries,
        recorded under the same check names (see the module docstring).

    Returns
    -------
    dict
        ``{'expectations': n, 'failed': n_failed, 'docs': str(docs_dir / 'index.html')}``.
    """
    sizes = _staged_sizes(con)
    with ThreadPoolExecutor(max_workers=1) as pool:
        counts = {t: _large_table_counts(pool, con, t, n) for t, n in sizes.items() if n > max_frame_rows}
        by_suite = run_suites(_gx_inputs(con, list(sizes), list(counts)), Path(docs_dir))
        suites = Suites(list(sizes), [], {table: future.result() for table, future in counts.items()})
    return record_suites(con, run_id, suites, by_suite, docs_dir)


def _main(work: Path, niceness: int = 0) -> None:
    """``python -m pipeline.quality DIR [NICENESS]``: lower this process's priority by NICENESS, import GX,
    then run the suites pickled on stdin and pickle their outcomes to ``DIR/out.pickle`` (see
    :class:`pipeline.evaluation.PendingSuites`)."""
    import pickle
    import sys

    if niceness and hasattr(os, "nice"):
        os.nice(niceness)
    _import_gx()  # the slow part, before the frames are needed
    inputs, docs_dir = pickle.load(sys.stdin.buffer)
    out = run_suites(inputs, docs_dir)
    (work / "out.pickle.part").write_bytes(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    (work / "out.pickle.part").replace(work / "out.pickle")


if __name__ == "__main__":
    import sys

    from pipeline.quality import _main as main  # the module's own classes, not copies in __main__: they are pickled

    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
