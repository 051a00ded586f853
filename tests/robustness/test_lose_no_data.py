"""Ordinary mistakes must not damage an evaluation database, with or without Prefect.

Each case runs the ``kokeilu`` command on the committed sample, once as plain Python
(``--no-orchestrate``) and once as the Prefect flow (under the session's test
harness), and expects the same exit code and the same one line on stderr:

1. a run under another pseudonymisation key exits 2 and writes nothing;
2. a header-only (or much smaller) correction of a loaded month is refused, exit 1,
   and the month keeps its rows; ``--allow-shrink REASON`` lets it in and the
   manifest keeps the reason;
3. ``validate`` (and the ``validate-delivery`` flow) refuse a header-only month, exit 1;
4. a delivery with one month cut to a tenth fails the run before any result is
   written, naming the month;
5. a run killed mid-load is marked ``abandoned`` by the next run.

Under Prefect none of these errors is retried and no traceback is logged.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import db

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
PAUSE_RUN = Path(__file__).resolve().parent / "pause_run.py"
KEY_ENV = "KOKEILU_PSEUDONYM_KEY"
MONTH = "201805"
MONTH_FILE = f"toimeentulotuki_{MONTH}.csv"
CONFIG = """\
outcomes = ["long_term_receipt"]
headline_outcomes = ["long_term_receipt"]
subgroups = []

[inference]
bootstrap_draws = 99
randomization_max_assignments = 1
randomization_draws = 99
"""
"""One yearly outcome and few draws: the cases are about what reaches the database, not about the estimates."""


@dataclass(frozen=True)
class Built:
    """A database built by a completed run on the committed sample under ``key``."""

    root: Path
    config: Path
    db: Path
    key: str

    def copy(self, directory: Path) -> Path:
        """A copy of the database for one test."""
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / "e.duckdb"
        shutil.copy(self.db, target)
        return target


PREFECT_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s*\| ")
"""A line of Prefect's console log (orchestrated runs print their flow's and tasks' log lines)."""


@dataclass(frozen=True)
class Outcome:
    """What one ``kokeilu`` command did: its exit code and what it printed."""

    exit_code: int
    stdout: str
    stderr: str

    def one_line(self) -> str:
        """The command's own single stderr line, its last (Prefect's log lines aside); no traceback anywhere."""
        assert "Traceback" not in self.stderr, self.stderr
        lines = [line for line in self.stderr.splitlines() if line.strip() and not PREFECT_LOG_LINE.match(line)]
        assert len(lines) == 1 and lines[0].startswith("kokeilu: "), self.stderr
        assert self.stderr.rstrip().splitlines()[-1] == lines[0]
        return lines[0]

    def assert_orchestrated_without_retry(self) -> None:
        """A flow ran, and Prefect retried none of its tasks."""
        assert "Beginning flow run" in self.stderr, self.stderr
        assert "Retry" not in self.stderr and "AwaitingRetry" not in self.stderr, self.stderr


def kokeilu(args: list[str], *, key: str, orchestrate: bool | None = None) -> Outcome:
    """Run ``kokeilu ARGS`` as a user does, in a child process; orchestrated, its flow reports to the session's
    Prefect harness."""
    env = {k: v for k, v in os.environ.items() if k not in ("KOKEILU_DEBUG", KEY_ENV)}
    if key:
        env[KEY_ENV] = key
    if orchestrate is not None:
        args = [*args, "--orchestrate" if orchestrate else "--no-orchestrate"]
    if orchestrate:
        from prefect.settings import PREFECT_API_URL

        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    done = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    return Outcome(done.returncode, done.stdout, done.stderr)


def run_args(built: Built, database: Path, *, kela: Path = SAMPLE / "kela", corrections: Path | None = None) -> list[str]:
    args = ["run", "--kela", str(kela), "--avain", str(SAMPLE / "avain"), "--db", str(database),
            "--out", str(database.parent / "out"), "--config", str(built.config), "--processes", "1"]
    return args + (["--corrections", str(corrections)] if corrections else [])


def table_digests(path: Path) -> dict[str, str]:
    """SHA-256 of every table's contents (rows in a canonical order), by ``schema.table``."""
    with db.connect(path, read_only=True) as con:
        tables = con.execute("select table_schema || '.' || table_name from information_schema.tables "
                             "where table_type = 'BASE TABLE' order by 1").fetchall()
        return {t: hashlib.sha256(repr(con.execute(f"select * from {t} order by all").fetchall()).encode()).hexdigest()
                for (t,) in tables}


def month_rows(path: Path, month: str = MONTH) -> int:
    with db.connect(path, read_only=True) as con:
        return con.execute("select count(*) from staging.kela_income_support where tilastokuukausi = ?",
                           [month]).fetchall()[0][0]


def runs(path: Path) -> dict[str, tuple[str, object, str | None]]:
    with db.connect(path, read_only=True) as con:
        return {r: (s, f, m) for r, s, f, m in
                con.execute("select run_id, status, finished_at, message from meta.runs").fetchall()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("lose-no-data")
    config = root / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    key = secrets.token_hex(32)
    database = root / "base" / "e.duckdb"
    database.parent.mkdir()
    done = kokeilu(run_args(Built(root, config, database, key), database), key=key, orchestrate=False)
    assert done.exit_code == 0, done.stderr
    return Built(root, config, database, key)


@pytest.fixture(params=[pytest.param(False, id="plain"), pytest.param(True, id="prefect", marks=pytest.mark.slow)])
def orchestrate(request: pytest.FixtureRequest) -> bool:
    """Each case as plain Python and as the Prefect flow (under the session's harness)."""
    if request.param:
        request.getfixturevalue("prefect_harness")
    return request.param


def _check_orchestrated(outcome: Outcome, orchestrate: bool) -> None:
    if orchestrate:
        outcome.assert_orchestrated_without_retry()
        assert not [s for s in _task_states("") if "Retry" in s], "a task was retried"


# ------------------------------------------------------------------------------------------ 1. another key
def test_another_key_exits_2_and_writes_nothing(built: Built, tmp_path: Path, orchestrate: bool) -> None:
    path = built.copy(tmp_path)
    before = table_digests(path)
    other = secrets.token_hex(32)

    done = kokeilu(run_args(built, path, corrections=SAMPLE / "kela_correction"), key=other, orchestrate=orchestrate)

    assert done.exit_code == 2
    line = done.one_line()
    assert "pseudonymisation key differs from the one that built" in line and "new database" in line
    assert other not in line and built.key not in line
    _check_orchestrated(done, orchestrate)
    assert table_digests(path) == before

    validated = kokeilu(["validate", str(SAMPLE / "kela_correction"), "--db", str(path)], key=other)
    assert validated.exit_code == 2
    assert "key differs" in validated.one_line()
    assert table_digests(path) == before


def test_the_same_key_passes_and_the_fingerprint_hides_the_key(built: Built, tmp_path: Path) -> None:
    path = built.copy(tmp_path)
    with db.connect(path, read_only=True) as con:
        stored = con.execute("select * from meta.key_fingerprint").fetchall()
    assert len(stored) == 1
    assert built.key not in repr(stored) and built.key.encode().hex() not in repr(stored)
    done = kokeilu(["validate", str(SAMPLE / "kela_correction"), "--db", str(path)], key=built.key)
    assert done.exit_code == 0, done.stderr


# ------------------------------------------------------------------------------------------ 2. shrinking month
def _correction(directory: Path, keep: int | None) -> Path:
    """A correction of MONTH holding its header and the first ``keep`` data rows (None: all)."""
    directory.mkdir(parents=True)
    lines = (SAMPLE / "kela" / MONTH_FILE).read_text(encoding="utf-8").splitlines(keepends=True)
    (directory / MONTH_FILE).write_text("".join(lines[: 1 + (len(lines) if keep is None else keep)]),
                                        encoding="utf-8")
    return directory


def test_a_correction_that_would_empty_or_shrink_its_month_is_refused(built: Built, tmp_path: Path,
                                                                      orchestrate: bool) -> None:
    path = built.copy(tmp_path / "db")
    rows = month_rows(path)
    assert rows > 100
    empty = _correction(tmp_path / "empty", keep=0)
    half = _correction(tmp_path / "half", keep=rows // 2)

    refused = kokeilu(run_args(built, path, corrections=empty), key=built.key, orchestrate=orchestrate)
    assert refused.exit_code == 1
    line = refused.one_line()
    assert MONTH_FILE in line and "file_no_rows" in line and "--allow-shrink" in line
    _check_orchestrated(refused, orchestrate)
    assert month_rows(path) == rows

    shrunk = kokeilu(run_args(built, path, corrections=half), key=built.key, orchestrate=orchestrate)
    assert shrunk.exit_code == 1
    line = shrunk.one_line()
    assert "month_shrinks" in line and f"the {rows:,} rows of month {MONTH} with " in line  # both row counts
    assert int(line.split(" with ")[1].split()[0].replace(",", "")) in range(rows // 2 - 5, rows // 2 + 1)
    assert month_rows(path) == rows
    with db.connect(path, read_only=True) as con:
        failed = con.execute("select count(*) from meta.runs where status = 'failed'").fetchall()[0][0]
        recorded = con.execute("select count(*) from meta.validation_results where check_name = 'month_shrinks' "
                               "and not passed and target = ?", [MONTH_FILE]).fetchall()[0][0]
    assert failed == 2
    assert recorded == 1

    reason = "Kela withdrew the May 2018 extract (ticket 4711)"
    through = kokeilu([*run_args(built, path, corrections=empty), "--allow-shrink", reason], key=built.key,
                      orchestrate=orchestrate)
    assert through.exit_code == 0, through.stderr
    assert month_rows(path) == 0
    with db.connect(path, read_only=True) as con:
        (override,), = con.execute("select override_reason from meta.loaded_files where period = ?",
                                   [MONTH]).fetchall()
        others = con.execute("select count(*) from meta.loaded_files where override_reason is not null "
                             "and period <> ?", [MONTH]).fetchall()[0][0]
    assert reason in override and "month_shrinks" in override
    assert others == 0


def test_allow_shrink_needs_a_reason(built: Built, tmp_path: Path) -> None:
    done = kokeilu([*run_args(built, built.copy(tmp_path)), "--allow-shrink", " "], key=built.key,
                   orchestrate=False)
    assert done.exit_code == 2
    assert "needs a reason" in done.one_line()


# ------------------------------------------------------------------------------------------ 3. validate
def test_validate_refuses_a_header_only_month(tmp_path: Path, orchestrate: bool) -> None:
    delivery = _correction(tmp_path / "delivery", keep=0)
    if not orchestrate:
        done = kokeilu(["validate", str(delivery), "--json"], key="")
        assert done.exit_code == 1
        assert '"file_rule": "file_no_rows"' in done.stdout
        allowed = kokeilu(["validate", str(delivery), "--allow-shrink", "an empty month is expected"], key="")
        assert allowed.exit_code == 0, allowed.stdout
        return
    from flows.validate import validate
    from pipeline.errors import ContractViolationError

    with pytest.raises(ContractViolationError) as raised:
        validate(delivery)
    assert raised.value.exit_code == 1
    assert "\n" not in str(raised.value)
    assert "retry" not in " ".join(_task_states("validate delivery")).lower()


def _task_states(name: str) -> list[str]:
    """The state names every run of the task ``name`` went through, from the Prefect API."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_task_runs() if r.name.startswith(name)]
        return [s.name for r in runs for s in client.read_task_run_states(r.id)]


# ------------------------------------------------------------------------------------------ 4. month volumes
def test_a_month_cut_to_a_tenth_fails_the_run_before_any_result(built: Built, tmp_path: Path,
                                                                 orchestrate: bool) -> None:
    kela = tmp_path / "kela"
    shutil.copytree(SAMPLE / "kela", kela)
    lines = (kela / MONTH_FILE).read_text(encoding="utf-8").splitlines(keepends=True)
    (kela / MONTH_FILE).write_text("".join(lines[: 1 + (len(lines) - 1) // 10]), encoding="utf-8")
    path = tmp_path / "db" / "e.duckdb"
    path.parent.mkdir()

    done = kokeilu(run_args(built, path, kela=kela), key=built.key, orchestrate=orchestrate)

    assert done.exit_code == 1
    line = done.one_line()
    assert "2018-05" in line and "month volume" in line
    _check_orchestrated(done, orchestrate)
    with db.connect(path, read_only=True) as con:
        results = {t: con.execute(f"select count(*) from results.{t}").fetchall()[0][0] for (t,) in con.execute(
            "select table_name from information_schema.tables where table_schema = 'results'").fetchall()}
        (status, message), = con.execute("select status, message from meta.runs").fetchall()
        panels = con.execute("select count(*) from information_schema.tables "
                             "where table_schema = 'panel'").fetchall()[0][0]
    assert results and not any(results.values()), results
    assert panels == 0, "panels were built after the volume check failed"
    assert status == "failed" and "2018-05" in message


# ------------------------------------------------------------------------------------------ 5. killed runs
def _kill_paused_run(built: Built, path: Path) -> None:
    """Start a plain run that pauses inside a file's load transaction, then SIGKILL it."""
    env = {**os.environ, KEY_ENV: built.key}
    env.pop("KOKEILU_DEBUG", None)
    proc = subprocess.Popen([sys.executable, str(PAUSE_RUN), "load=toimeentulotuki_201906.parquet",
                             *run_args(built, path), "--no-orchestrate"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen, deadline = b"", time.monotonic() + 300
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    while b"PAUSED" not in seen and time.monotonic() < deadline and proc.poll() is None:
        if select.select([fd], [], [], 1.0)[0]:
            seen += os.read(fd, 65536)
    if b"PAUSED" not in seen:
        proc.kill()
        proc.wait()
        pytest.fail(f"the run never paused: {seen.decode()[-500:]}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_killed_run_is_marked_abandoned_by_the_next(built: Built, tmp_path: Path, orchestrate: bool) -> None:
    path = tmp_path / "e.duckdb"
    _kill_paused_run(built, path)
    (killed, (status, finished, _)), = runs(path).items()
    assert (status, finished) == ("running", None)

    done = kokeilu(run_args(built, path), key=built.key, orchestrate=orchestrate)

    assert done.exit_code == 0, done.stderr
    after = runs(path)
    status, finished, message = after[killed]
    assert status == "abandoned" and finished is not None
    (rerun, (rerun_status, _, _)), = ((r, v) for r, v in after.items() if r != killed)
    assert rerun_status == "completed" and rerun in message


def test_a_live_run_is_not_marked_abandoned(tmp_path: Path) -> None:
    """Only a run whose process is gone is abandoned: this process's own run, and another host's, stay."""
    from pipeline.load import guards

    with db.connect(tmp_path / "e.duckdb") as con:
        db.ensure_result_tables(con)
        db.start_run(con, run_id="live", config_json="{}", inputs=[])
        db.start_run(con, run_id="dead", config_json="{}", inputs=[])
        db.start_run(con, run_id="elsewhere", config_json="{}", inputs=[])
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
        con.execute("update meta.runs set pid = ? where run_id = 'dead'", [int(dead.stdout)])
        con.execute("update meta.runs set host = 'another-host', pid = 1 where run_id = 'elsewhere'")
        assert guards.mark_abandoned(con, noticed_by="test") == ["dead"]
        states = dict(con.execute("select run_id, status from meta.runs").fetchall())
    assert states == {"live": "running", "dead": "abandoned", "elsewhere": "running"}
