"""The command line: fast help, one-line errors, no heavy imports at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

KOKEILU = [sys.executable, "-c", "from flows.cli import main; main()"]
COMMANDS = ["demo", "generate", "validate", "run", "report", "export", "serve"]


def test_help_imports_no_heavy_dependency() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom flows.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('prefect', 'great_expectations', 'linearmodels') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    done = subprocess.run([*KOKEILU, command, "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout


def test_run_without_key_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "KOKEILU_PSEUDONYM_KEY"}
    done = subprocess.run([*KOKEILU, "run", "--kela", str(tmp_path)], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "KOKEILU_PSEUDONYM_KEY" in done.stderr


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("[disclosure]\nmin_cell_persons = -1\n", encoding="utf-8")
    done = subprocess.run([*KOKEILU, "report", "--db", str(tmp_path / "x.duckdb"), "--config", str(bad)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert "disclosure.min_cell_persons" in done.stderr


def test_serve_without_a_server_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run([*KOKEILU, "serve", "--kela", str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 2
    assert "prefect server start" in done.stderr
    assert done.stderr.count("\n") == 1


def test_run_passes_corrections_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from flows import cli

    seen: dict = {}
    monkeypatch.setattr(cli, "_run_and_print", lambda **kw: seen.update(kw))
    monkeypatch.setenv("KOKEILU_PSEUDONYM_KEY", "a-test-key-of-enough-bytes")
    (tmp_path / "kela").mkdir()
    (tmp_path / "fix").mkdir()
    result = CliRunner().invoke(cli.app, ["run", "--kela", str(tmp_path / "kela"), "--corrections",
                                          str(tmp_path / "fix"), "--no-orchestrate"])
    assert result.exit_code == 0, result.output
    assert seen["corrections"] == tmp_path / "fix"
    assert seen["kela"] == tmp_path / "kela"
    assert seen["processes"] is None


def test_run_passes_processes_on_and_refuses_them_with_dask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from flows import cli

    seen: dict = {}
    monkeypatch.setattr(cli, "_run_and_print", lambda **kw: seen.update(kw))
    monkeypatch.setenv("KOKEILU_PSEUDONYM_KEY", "a-test-key-of-enough-bytes")
    (tmp_path / "kela").mkdir()
    result = CliRunner().invoke(cli.app, ["run", "--kela", str(tmp_path / "kela"), "--processes", "1"])
    assert result.exit_code == 0, result.output
    assert seen["processes"] == 1
    seen.clear()
    result = CliRunner().invoke(cli.app, ["run", "--kela", str(tmp_path / "kela"), "--processes", "2",
                                          "--task-runner", "dask"])
    assert result.exit_code != 0 and not seen
    assert "--processes" in result.output
    result = CliRunner().invoke(cli.app, ["run", "--kela", str(tmp_path / "kela"), "--processes", "0"])
    assert result.exit_code == 2 and not seen


def test_run_with_a_missing_corrections_directory_is_one_line(tmp_path: Path) -> None:
    env = {**__import__("os").environ, "KOKEILU_PSEUDONYM_KEY": "a-test-key-of-enough-bytes"}
    done = subprocess.run([*KOKEILU, "run", "--kela", str(tmp_path), "--corrections", str(tmp_path / "nope")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "--corrections" in done.stderr and "not a directory" in done.stderr
