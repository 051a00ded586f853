"""Nothing is dead on arrival: every module of the package and every flow imports."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import flows
import pipeline
import schemas


def _modules() -> list[str]:
    names = []
    for package in (pipeline, flows, schemas):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_pipeline_never_imports_prefect() -> None:
    """pipeline/ is usable from a notebook without an orchestrator."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, pipeline\n"
        "for i in pkgutil.walk_packages(pipeline.__path__, prefix='pipeline.'):\n"
        "    importlib.import_module(i.name)\n"
        "assert 'prefect' not in sys.modules, 'pipeline imported prefect'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_flows_are_prefect_flows() -> None:
    from prefect import Flow

    from flows.evaluate import evaluate
    from flows.validate import validate

    assert isinstance(evaluate, Flow) and isinstance(validate, Flow)
