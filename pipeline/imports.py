"""Importing slow modules in the background while the caller does I/O-bound work.

Great Expectations and the estimators (SciPy among them) take seconds to
import; a run starts their import in a thread while DuckDB loads or reads, and
joins it before it needs them.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Sequence


def import_in_background(modules: Sequence[str], *, name: str) -> threading.Thread:
    """Start importing ``modules`` in order in a daemon thread; ``join()`` it before use.

    An import that fails stops the thread quietly: the failure is reported by the
    caller's own import of the module, where it is needed.
    """

    def run() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - reported where the module is used
                return

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def child_env() -> dict[str, str]:
    """The environment of a child Python: this one's, with the directory ``pipeline`` is imported from."""
    import pipeline

    root = str(os.path.dirname(os.path.dirname(os.path.abspath(pipeline.__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env
