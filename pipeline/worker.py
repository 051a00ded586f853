"""A worker process for estimation units: ``python -m pipeline.worker``.

It reads pickled requests ``(unit, frames, config)`` from standard input, one
after another, and answers each on the pipe whose file descriptor is
``sys.argv[1]`` (not standard output: nothing a library prints can corrupt an
answer) with a pickled ``("ok", tables)`` or ``("error", message)``. It ends
when its standard input closes. See :class:`pipeline.analysis.UnitWorker`.

The worker imports the estimators as soon as it starts, while the process that
started it is still reading the units' inputs.
"""

from __future__ import annotations

import os
import pickle
import sys

from pipeline.imports import child_env  # noqa: F401 - where pipeline.evaluation finds it


def main(answer_fd: int) -> None:
    """Say ``("ready", None)`` once the estimators are imported, then answer requests until standard input ends."""
    out = os.fdopen(answer_fd, "wb")
    requests = sys.stdin.buffer
    import importlib

    from pipeline import analysis

    for module in analysis.ESTIMATOR_MODULES:
        importlib.import_module(module)
    pickle.dump(("ready", None), out)
    out.flush()
    while True:
        try:
            unit, frames, config = pickle.load(requests)
        except EOFError:
            return
        try:
            reply: tuple[str, object] = ("ok", analysis.run_unit(frames, config, unit))
        except Exception as exc:  # noqa: BLE001 - the caller runs the unit itself and raises there
            reply = ("error", f"{type(exc).__name__}: {exc}".splitlines()[0])
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]))
