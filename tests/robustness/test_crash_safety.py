"""SIGKILL during loading or estimation leaves the database at its last good state, and the next run completes.

Every run is a real ``kokeilu run --no-orchestrate`` in a child process, on a copy of the committed
sample, with a random pseudonymisation key in the environment. To kill at a known point the child is
started through ``pause_run.py``, which holds it inside a stage's open transaction and says so on
stdout; the test then sends SIGKILL. A clean run of the same delivery, started first and running
alongside, is the reference for the state after recovery.
"""

from __future__ import annotations

import os
import select
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import db

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
PAUSE_RUN = Path(__file__).resolve().parent / "pause_run.py"
KILLED_FILE = "toimeentulotuki_201906.parquet"
"""The Kela file whose load transaction is killed: halfway through the months, and the one Parquet file."""
CONFIG = """\
outcomes = ["long_term_receipt"]
headline_outcomes = ["long_term_receipt"]
subgroups = []

[inference]
bootstrap_draws = 99
randomization_max_assignments = 1
randomization_draws = 99
"""
"""One yearly outcome and few draws: the results transaction still writes estimates and inference rows,
at a fraction of the cost of a monthly outcome's placebo, event-study and synthetic-DiD runs. The test is
about what reaches the database, and a transaction does not care which tables it writes."""
CHILD_TIMEOUT = 300


@dataclass(frozen=True)
class Setup:
    """The delivery copy, configuration and environment shared by every run of the module."""

    root: Path
    delivery: Path
    config: Path
    env: dict[str, str]

    def args(self, database: Path) -> list[str]:
        """``kokeilu run`` arguments for one database (each database gets its own output folder)."""
        return ["run", "--kela", str(self.delivery / "kela"), "--avain", str(self.delivery / "avain"),
                "--db", str(database), "--out", str(database.parent / "out"), "--config", str(self.config),
                "--no-orchestrate"]


@dataclass
class Child:
    """A ``kokeilu run`` child process and the file its stderr goes to."""

    proc: subprocess.Popen[bytes]
    stderr: Path

    def tail(self) -> str:
        """The end of its stderr, for a failure message."""
        return self.stderr.read_text(encoding="utf-8", errors="replace")[-2000:]

    def finish(self) -> None:
        """Wait for a run that must complete."""
        try:
            out, _ = self.proc.communicate(timeout=CHILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        assert self.proc.returncode == 0, (
            f"kokeilu run failed ({self.proc.returncode}): {out.decode()[-1000:]} {self.tail()}")


def _start(setup: Setup, database: Path, pause: str | None = None) -> Child:
    database.parent.mkdir(parents=True, exist_ok=True)
    head = [sys.executable, str(PAUSE_RUN), pause] if pause else [
        sys.executable, "-c", "from flows.cli import main; main()"]
    stderr = database.parent / f"stderr-{time.monotonic_ns()}.txt"
    with stderr.open("wb") as err:
        proc = subprocess.Popen([*head, *setup.args(database)], env=setup.env, stdout=subprocess.PIPE, stderr=err)
    return Child(proc, stderr)


def _kill_when_paused(child: Child, point: str) -> None:
    """Wait until the child announces the pause, then SIGKILL it."""
    proc, marker, seen = child.proc, f"PAUSED {point}".encode(), b""
    deadline = time.monotonic() + CHILD_TIMEOUT
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    if marker not in seen:
        proc.kill()
        proc.wait()
        pytest.fail(f"the run never reached the pause {point!r} (exit {proc.returncode}): "
                    f"{seen.decode()[-1000:]} {child.tail()}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _runs(path: Path) -> dict[str, tuple[str, object]]:
    with db.connect(path, read_only=True) as con:
        return {r: (s, f) for r, s, f in con.execute("select run_id, status, finished_at from meta.runs").fetchall()}


def _tables(path: Path, schema: str) -> list[str]:
    with db.connect(path, read_only=True) as con:
        return [t for (t,) in con.execute("select table_name from information_schema.tables where table_schema = ? "
                                          "order by 1", [schema]).fetchall()]


def _rows(path: Path, table: str, where: str = "true", params: list | None = None) -> list[tuple]:
    """Every row of a table, in a canonical order, without run ids (they differ between runs by design)."""
    with db.connect(path, read_only=True) as con:
        cols = [c for (c,) in con.execute("select column_name from information_schema.columns "
                                          "where table_schema || '.' || table_name = ?", [table]).fetchall()]
        select_list = "* exclude (run_id)" if "run_id" in cols else "*"
        return con.execute(f"select {select_list} from {table} where {where} order by all", params or []).fetchall()


def _results(path: Path, run_id: str) -> dict[str, list[tuple]]:
    return {t: _rows(path, f"results.{t}", "run_id = ?", [run_id]) for t in _tables(path, "results")}


def _data_state(path: Path) -> dict[str, list[tuple]]:
    """Staging, quarantine and panels: everything a run rebuilds or keeps besides its results."""
    return {f"{s}.{t}": _rows(path, f"{s}.{t}") for s in ("staging", "quarantine", "panel") for t in _tables(path, s)}


def _assert_opens_and_manifest_holds(path: Path) -> None:
    """The file opens for writing, and staging and quarantine hold exactly the manifest's files, each whole."""
    with db.connect(path) as con:
        con.execute("checkpoint").fetchall()
        manifest = {(e, f): (i, s, q) for e, f, i, s, q in con.execute(
            "select extract, file_name, rows_in, rows_staged, rows_quarantined from meta.loaded_files").fetchall()}
        found: dict[tuple[str, str], list[int]] = {}
        for extract, table in (("kela", "kela_income_support"), ("avain", "avain_assessments")):
            for i, schema in enumerate(("staging", "quarantine")):
                for name, n in con.execute(f"select source_file, count(*) from {schema}.{table} group by 1").fetchall():
                    found.setdefault((extract, name), [0, 0])[i] = n
        months = con.execute("select count(distinct tilastokuukausi), count(distinct source_file) "
                             "from staging.kela_income_support").fetchall()[0]
    assert set(found) <= set(manifest), f"rows of files missing from the manifest: {set(found) - set(manifest)}"
    for key, (rows_in, staged, quarantined) in manifest.items():
        assert found.get(key, [0, 0]) == [staged, quarantined], f"{key} is not whole"
        assert rows_in == staged + quarantined
    assert months[0] == months[1], "a Kela month is staged from more than one file"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("crash")
    for part in ("kela", "avain"):
        shutil.copytree(SAMPLE / part, root / "delivery" / part)
    (root / "config.toml").write_text(CONFIG, encoding="utf-8")
    env = {**os.environ, "KOKEILU_PSEUDONYM_KEY": secrets.token_hex(32)}
    env.pop("KOKEILU_DEBUG", None)
    return Setup(root=root, delivery=root / "delivery", config=root / "config.toml", env=env)


class CleanRun:
    """An uninterrupted run of the same delivery, started at once so that it runs beside the first kill."""

    def __init__(self, setup: Setup) -> None:
        self.path = setup.root / "clean" / "e.duckdb"
        self.child = _start(setup, self.path)
        self._done: tuple[str, dict[str, list[tuple]]] | None = None

    def result(self) -> tuple[str, dict[str, list[tuple]]]:
        """Wait for the run (its database is not opened before); its run id and results."""
        if self._done is None:
            self.child.finish()
            (run_id, (status, _)), = _runs(self.path).items()
            assert status == "completed"
            self._done = run_id, _results(self.path, run_id)
            assert self._done[1]["did_estimates"], "the clean run wrote no estimates to compare with"
        return self._done


@pytest.fixture(scope="module")
def clean(setup: Setup) -> Iterator[CleanRun]:
    run = CleanRun(setup)
    yield run
    if run.child.proc.poll() is None:
        run.child.proc.kill()
        run.child.proc.wait()


@pytest.mark.slow
def test_kill_during_loading_keeps_whole_files_and_rerun_completes(setup: Setup, clean: CleanRun) -> None:
    path = setup.root / "load-kill" / "e.duckdb"
    _kill_when_paused(_start(setup, path, pause=f"load={KILLED_FILE}"), "load")

    _assert_opens_and_manifest_holds(path)
    (killed, (status, finished)), = _runs(path).items()
    assert (status, finished) == ("running", None)
    kela = sorted(p.name for p in (setup.delivery / "kela").iterdir())
    before = [n for n in kela if n < KILLED_FILE]
    with db.connect(path, read_only=True) as con:
        loaded = [n for (n,) in con.execute("select file_name from meta.loaded_files order by 1").fetchall()]
        validated = {n for (n,) in con.execute("select distinct target from meta.validation_results").fetchall()}
        results = sum(con.execute(f"select count(*) from results.{t}").fetchall()[0][0]
                      for t in _tables(path, "results"))
    # files are written in batches, one transaction each: what is committed is whole files, in delivery order
    assert loaded == before[: len(loaded)], "the manifest holds other files than those committed before the kill"
    assert KILLED_FILE not in loaded
    assert KILLED_FILE not in validated
    assert results == 0

    _, clean_results = clean.result()
    staged_before = "source_file in (select file_name from meta.loaded_files)"
    assert _rows(path, "staging.kela_income_support", staged_before) == _rows(
        clean.path, "staging.kela_income_support", f"source_file in (select unnest(?::varchar[]))", [loaded])

    _start(setup, path).finish()
    runs = _runs(path)
    assert runs[killed][0] == "abandoned" and runs[killed][1] is not None  # the next run noticed the dead process
    (rerun, (status, _)), = ((r, v) for r, v in runs.items() if r != killed)
    assert status == "completed"
    assert _results(path, rerun) == clean_results
    assert _data_state(path) == _data_state(clean.path)
    _assert_opens_and_manifest_holds(path)


@pytest.mark.slow
def test_kill_during_estimation_keeps_earlier_results_and_rerun_completes(setup: Setup, clean: CleanRun) -> None:
    clean_id, clean_results = clean.result()
    path = setup.root / "estimate-kill" / "e.duckdb"
    path.parent.mkdir()
    for part in clean.path.parent.glob(clean.path.name + "*"):
        shutil.copy(part, path.parent / part.name.replace(clean.path.name, path.name))
    _kill_when_paused(_start(setup, path, pause="estimate"), "estimate")

    _assert_opens_and_manifest_holds(path)
    runs = _runs(path)
    (killed, (status, finished)), = ((r, v) for r, v in runs.items() if r != clean_id)
    assert (status, finished) == ("running", None)
    assert runs[clean_id][0] == "completed"
    assert _results(path, killed) == {t: [] for t in clean_results}
    assert _results(path, clean_id) == clean_results
    assert _data_state(path) == _data_state(clean.path)

    _start(setup, path).finish()
    runs = _runs(path)
    assert runs[killed][0] == "abandoned" and runs[killed][1] is not None
    assert runs[clean_id][0] == "completed"
    (rerun, (status, _)), = ((r, v) for r, v in runs.items() if r not in (killed, clean_id))
    assert status == "completed"
    assert _results(path, rerun) == clean_results
    assert _results(path, clean_id) == clean_results
