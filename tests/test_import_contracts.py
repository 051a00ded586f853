"""The import contracts of pyproject.toml ([tool.importlinter]) hold: ``lint-imports`` per contract."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import pipeline

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

HOLDING = ("did-is-domain-free", "no-cycles", "pipeline-never-imports-flows")
"""Contracts kept today."""

PENDING: dict[str, str] = {}
"""Contracts written but broken today, and the imports that break them."""


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _lint(contract: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([str(LINT_IMPORTS), "--contract", contract, "--no-cache"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)


def test_every_contract_is_classified() -> None:
    assert {c["id"] for c in _contracts()} == set(HOLDING) | set(PENDING)


@pytest.mark.parametrize("contract", HOLDING)
def test_contract_holds(contract: str) -> None:
    res = _lint(contract)
    assert res.returncode == 0, res.stdout + res.stderr


def test_pending_contracts_are_still_broken() -> None:
    """A contract written but broken (``PENDING``, with the import that breaks it) must still fail: once it
    holds, it moves to ``HOLDING``, where a later break fails the suite."""
    holding_now = [c for c in sorted(PENDING) if _lint(c).returncode == 0]
    assert not holding_now, f"these contracts hold now: move them from PENDING to HOLDING: {holding_now}"


def test_did_contract_forbids_every_other_pipeline_module() -> None:
    """A new top-level module of pipeline is forbidden to pipeline.did as soon as it exists."""
    (did,) = [c for c in _contracts() if c["id"] == "did-is-domain-free"]
    top = {f"pipeline.{m.name}" for m in pkgutil.iter_modules(pipeline.__path__)} - {"pipeline.did"}
    assert top <= set(did["forbidden_modules"]), sorted(top - set(did["forbidden_modules"]))
    assert {"schemas", "flows"} <= set(did["forbidden_modules"])
