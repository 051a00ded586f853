"""Every command maps every error a user can cause to its documented exit code, in one line on stderr.

The codes are documented in ``flows/cli.py`` and the README: 1 for contract violations and failed or
refused runs, 2 for unusable input, arguments, keys and databases in use, 3 only for a bug.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
KEY = "0123456789abcdef0123456789abcdef"


def kokeilu(*args: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KOKEILU_PSEUDONYM_KEY", "KOKEILU_DEBUG",
                                                          "PREFECT_API_URL")}
    if key is not None:
        env["KOKEILU_PSEUDONYM_KEY"] = key
    return subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A database held open for writing by another process (as a run holds it)."""
    path = tmp_path_factory.mktemp("busy") / "e.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, sys, time\nc = duckdb.connect({str(path)!r})\n"
                               "print('ready', flush=True)\ntime.sleep(300)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    yield path
    holder.kill()
    holder.wait()


def _cases(tmp: Path, busy: Path) -> list[tuple[str, list[str], str | None, int, str]]:
    """(name, arguments, key, expected exit code, phrase of the one line)."""
    a_file = tmp / "a-file"
    a_file.write_text("not a directory", encoding="utf-8")
    missing = tmp / "missing"
    return [
        ("generate into a file", ["generate", "--out", str(a_file / "x"), "--scale", "sample"], KEY, 2,
         "cannot write the delivery"),
        ("validate a missing directory", ["validate", str(missing)], KEY, 2, "does not exist"),
        ("validate --db without a key", ["validate", str(SAMPLE / "kela"), "--db", str(tmp / "v.duckdb")], None, 2,
         "no pseudonymisation key"),
        ("validate --db on a database in use", ["validate", str(SAMPLE / "kela_correction"), "--db", str(busy)],
         KEY, 2, "in use"),
        ("run without a key", ["run", "--kela", str(SAMPLE / "kela")], None, 2, "no pseudonymisation key"),
        ("run with a key too short", ["run", "--kela", str(SAMPLE / "kela"), "--db", str(tmp / "r.duckdb"),
                                      "--no-orchestrate"], "short", 2, "too short"),
        ("run on a missing directory", ["run", "--kela", str(missing)], KEY, 2, "not a directory"),
        ("run on a database in use", ["run", "--kela", str(SAMPLE / "kela"), "--db", str(busy),
                                      "--no-orchestrate"], KEY, 2, "in use"),
        ("run with a bad configuration", ["run", "--kela", str(SAMPLE / "kela"), "--config", str(missing)], KEY, 2,
         "configuration"),
        ("demo into a file", ["demo", "--out", str(a_file), "--no-orchestrate"], None, 2, "cannot write"),
        ("report without a database", ["report", "--db", str(missing / "e.duckdb")], None, 2, "does not exist"),
        ("report on a database in use", ["report", "--db", str(busy)], None, 2, "in use"),
    ]


def test_every_command_error_is_one_line_with_its_code(tmp_path: Path, busy: Path) -> None:
    failures = []
    for name, args, key, code, phrase in _cases(tmp_path, busy):
        done = kokeilu(*args, key=key)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        if (done.returncode, len(lines)) != (code, 1) or phrase not in done.stderr or "Traceback" in done.stderr:
            failures.append(f"{name}: exit {done.returncode} (expected {code}), stderr {done.stderr!r}")
    assert not failures, "\n".join(failures)
