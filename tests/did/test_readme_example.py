"""The example of "Use the estimators on your own panel" runs and prints the numbers the text shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "README.md"
DATA = ROOT.parent / "shared" / "data" / "mpdta.csv"
NUMBER = re.compile(r"-?\d+\.\d+|-?\d+|NaN|null|true|false")


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of one language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_the_example_prints_what_the_text_shows() -> None:
    if not DATA.is_file():
        reason = f"{DATA} is missing: the shared reference data sits beside the checkout"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    text = DOC.read_text()
    code, shown = blocks(text, "python"), blocks(text, "text")
    assert code and len(shown) == len(code), "each python block is followed by its output block"
    for source, expected in zip(code, shown):
        run = subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True, text=True, timeout=600,
                             check=False)
        assert run.returncode == 0, run.stderr
        # the numbers (and the cells' words), not the table borders: a new polars may draw them differently
        assert NUMBER.findall(run.stdout) == NUMBER.findall(expected), (
            f"{DOC.name}: the example's output changed; paste it again:\n{run.stdout}")
