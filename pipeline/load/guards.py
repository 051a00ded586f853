"""Guards that refuse what would silently damage a loaded database.

Evaluators schedule runs monthly and nobody watches them, so the pipeline itself
refuses the ordinary mistakes that would otherwise corrupt an evaluation and
still end ``completed``:

* **another pseudonymisation key** (:func:`check_key`, :func:`record_key`): the
  database remembers a keyed fingerprint of the key that built it (scrypt of the
  key with a random salt: never the key, and slow to test guesses against). A
  load, run or ``validate --db`` under another key stops before it writes
  anything: its persons would match no one loaded before.
* **a re-delivery that would empty or shrink its month** (:func:`shrink_refusal`):
  a Kela-style month file that would replace the rows of its month with markedly
  fewer is refused, before it replaces anything, unless the user gives a reason
  (``--allow-shrink REASON``), which the manifest keeps.
* **a month whose volume departs from its neighbours** (:func:`month_volumes`):
  checked in every run after the load, before anything is estimated.
* **runs whose process died** (:func:`mark_abandoned`): a run records its host,
  process id and process start time; the next run marks a ``running`` run whose
  process is gone as ``abandoned``, so a crash is told from a run in progress.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import socket
from dataclasses import dataclass

import duckdb

from pipeline import db as _db
from pipeline.errors import InputError, KokeiluError, RunFailedError


class KeyMismatchError(InputError):
    """The pseudonymisation key differs from the one that built the database."""


class RefusedDeliveryError(RunFailedError):
    """A delivered file was refused because loading it would damage what is loaded (exit code 1)."""


class MonthVolumeError(RunFailedError):
    """A month's staged row count departs from its neighbours' beyond the configured band."""


# ---------------------------------------------------------------- the key's fingerprint
FINGERPRINT_ALGORITHM = "scrypt:n=16384,r=8,p=1,dklen=32"
"""How the key's fingerprint is derived (stored beside it, so that it can change without breaking old files)."""


def _derive(key: bytes, salt: bytes, algorithm: str) -> bytes:
    if algorithm != FINGERPRINT_ALGORITHM:
        raise InputError(f"the database's key fingerprint uses {algorithm!r}, which this kokeilu does not know")
    return hashlib.scrypt(key, salt=salt, n=16384, r=8, p=1, dklen=32, maxmem=64 * 1024 * 1024)


def _stored_fingerprint(con: duckdb.DuckDBPyConnection) -> tuple[str, str, str] | None:
    exists = con.execute("select count(*) from information_schema.tables "
                         "where table_schema = 'meta' and table_name = 'key_fingerprint'").fetchall()[0][0]
    if not exists:
        return None
    row = con.execute("select algorithm, salt, fingerprint from meta.key_fingerprint").fetchall()
    return row[0] if row else None


def check_key(con: duckdb.DuckDBPyConnection, key: bytes, db_path: object = "this database") -> None:
    """Raise :class:`KeyMismatchError` (one line, exit 2) if the database was built under another key.

    Writes nothing: a database without a fingerprint passes (the first load records one).
    """
    stored = _stored_fingerprint(con)
    if stored is None:
        return
    algorithm, salt, fingerprint = stored
    if not hmac.compare_digest(_derive(key, bytes.fromhex(salt), algorithm).hex(), fingerprint):
        raise KeyMismatchError(
            f"the pseudonymisation key differs from the one that built {db_path}: nothing was written; "
            "use the same key, or load everything into a new database (--db) with the new key")


def record_key(con: duckdb.DuckDBPyConnection, key: bytes, *, run_id: str) -> None:
    """Record the fingerprint of ``key`` if the database has none yet (call :func:`check_key` first)."""
    if _stored_fingerprint(con) is not None:
        return
    _db.execute_file(con, "meta/key_fingerprint.sql")
    salt = secrets.token_bytes(16)
    con.execute("insert into meta.key_fingerprint values (?, ?, ?, now(), ?)",
                [FINGERPRINT_ALGORITHM, salt.hex(), _derive(key, salt, FINGERPRINT_ALGORITHM).hex(), run_id])


# ---------------------------------------------------------------- shrinking months
@dataclass(frozen=True)
class Shrink:
    """A re-delivered month that would hold fewer rows than the rows it replaces."""

    period: str
    before: int
    after: int

    @property
    def drop(self) -> float:
        """The share of the replaced rows that would be gone."""
        return 1 - self.after / self.before if self.before else 0.0


def shrink_refusal(period: str, before: int, after: int, max_shrink: float) -> Shrink | None:
    """The shrink of a month from ``before`` to ``after`` valid rows, if it is more than ``max_shrink`` allows."""
    shrink = Shrink(period, before, after)
    return shrink if before > 0 and shrink.drop > max_shrink + 1e-12 else None


def shrink_detail(shrink: Shrink, max_shrink: float) -> str:
    """The one-line reason a file is refused, with both row counts and the way through."""
    return (f"would replace the {shrink.before:,} rows of month {shrink.period} with {shrink.after:,} "
            f"({shrink.drop:.0%} fewer; at most {max_shrink:.0%} fewer allowed): nothing of it was loaded; "
            "load it anyway with --allow-shrink REASON")


# ---------------------------------------------------------------- month volumes
@dataclass(frozen=True)
class MonthVolume:
    """One Kela-style month's staged rows beside the median of its neighbours'."""

    month: dt.date
    rows: int
    neighbours: float | None

    @property
    def ratio(self) -> float | None:
        """rows / neighbours' median (None with no neighbours)."""
        return None if not self.neighbours else self.rows / self.neighbours


def month_volumes(con: duckdb.DuckDBPyConnection, *, neighbours: int) -> list[MonthVolume]:
    """Staged Kela-style rows of every month from the first to the last loaded (a gap counts 0 rows), each with
    the median of up to ``neighbours`` months on each side."""
    counts = dict(con.execute(_db.sql_text("checks/month_volumes.sql")).fetchall())
    if not counts:
        return []
    months = _month_range(min(counts), max(counts))
    rows = [int(counts.get(m, 0)) for m in months]
    out = []
    for i, (month, n) in enumerate(zip(months, rows, strict=True)):
        around = rows[max(0, i - neighbours):i] + rows[i + 1:i + 1 + neighbours]
        out.append(MonthVolume(month, n, _median(around) if around else None))
    return out


def check_month_volumes(con: duckdb.DuckDBPyConnection, *, run_id: str, band: float, neighbours: int) -> None:
    """Record the volume check of every month in ``meta.validation_results``; raise :class:`MonthVolumeError`
    (exit 1) naming each month outside ``[1 - band, 1 + band]`` times its neighbours' median, unless its file
    was loaded with ``--allow-shrink REASON`` (the user accepted its volume; the reason is in the detail)."""
    volumes = month_volumes(con, neighbours=neighbours)
    accepted = dict(con.execute("select period, override_reason from meta.loaded_files "
                                "where extract = 'kela' and override_reason is not null").fetchall())
    outside = [v for v in volumes if v.ratio is not None and abs(v.ratio - 1) > band]
    bad = [v for v in outside if f"{v.month:%Y%m}" not in accepted]
    now = dt.datetime.now(dt.UTC)
    rows = [(run_id, now, "volume", "month_volume", f"{v.month:%Y%m}", v not in bad, v.rows,
             None if v.neighbours is None else round(v.neighbours),
             f"{v.rows:,} staged rows; median of neighbouring months "
             + ("n/a" if v.neighbours is None else f"{v.neighbours:,.0f} (allowed: ±{band:.0%})")
             + (f"; outside the band, accepted when its file was loaded: {accepted[f'{v.month:%Y%m}']}"
                if v in outside and v not in bad else ""))
            for v in volumes]
    if rows:
        with _db.transaction(con):
            con.executemany("insert into meta.validation_results values (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    if bad:
        named = "; ".join(f"{v.month:%Y-%m} has {v.rows:,} rows against {v.neighbours:,.0f} in its neighbours "
                          f"({v.ratio:.0%})" for v in bad)
        raise MonthVolumeError(f"month volume check failed, nothing was estimated: {named} "
                               f"(allowed: ±{band:.0%}, loading.month_volume_band); correct the delivery "
                               "with --corrections")


def _month_range(first: dt.date, last: dt.date) -> list[dt.date]:
    out, y, m = [], first.year, first.month
    while (y, m) <= (last.year, last.month):
        out.append(dt.date(y, m, 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _median(values: list[int]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return float(s[mid]) if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


# ---------------------------------------------------------------- abandoned runs
def _alive(pid: int, started: dt.datetime | None) -> bool:
    import psutil

    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
    if started is None:
        return True
    return abs(created - started.timestamp()) < 1.0


def mark_abandoned(con: duckdb.DuckDBPyConnection, *, noticed_by: str) -> list[str]:
    """Mark ``abandoned`` every ``running`` run of this host whose process is gone (or a run recorded before
    runs kept their process); returns their ids. Runs of other hosts are left: their processes cannot be seen."""
    host = socket.gethostname()
    running = con.execute("select run_id, host, pid, process_started_at from meta.runs "
                          "where status = 'running'").fetchall()
    gone = [run_id for run_id, h, pid, started in running
            if h is None or (h == host and not _alive(int(pid), started))]
    for run_id in gone:
        con.execute("update meta.runs set status = 'abandoned', finished_at = now(), message = ? where run_id = ?",
                    [f"abandoned: its process ended without finishing the run; noticed by run {noticed_by}",
                     run_id])
    return gone


def is_expected(exc: BaseException) -> bool:
    """True for an error the user can act on (a one-line :class:`~pipeline.errors.KokeiluError`): retrying
    it cannot help."""
    return isinstance(exc, KokeiluError)
