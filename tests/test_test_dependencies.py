"""Every test-only peer is installed: a missing one fails the suite instead of skipping the tests that need it.

Under CI (``CI`` set), ``pytest.importorskip`` also fails instead of skipping (``tests/conftest.py``).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path


def test_every_peer_imports(test_peers: tuple[str, ...]) -> None:
    missing = []
    for name in test_peers:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
    assert not missing, f"test dependencies missing: {missing}"


def test_importorskip_fails_under_ci(tmp_path: Path) -> None:
    """A test that needs a missing module fails under CI, where it would only be skipped elsewhere."""
    (tmp_path / "test_needs_missing.py").write_text(
        "import pytest\n\ndef test_it():\n    pytest.importorskip('kokeilu_no_such_module')\n", encoding="utf-8")
    conftest = Path(__file__).resolve().parent / "conftest.py"
    (tmp_path / "conftest.py").write_text(conftest.read_text(encoding="utf-8"), encoding="utf-8")
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    skipped = subprocess.run(base, cwd=tmp_path, env=env, capture_output=True, text=True)
    failed = subprocess.run(base, cwd=tmp_path, env={**env, "CI": "true"}, capture_output=True, text=True)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    assert failed.returncode == 1 and "kokeilu_no_such_module is missing" in failed.stdout, failed.stdout
