"""Run ``kokeilu`` in this process, pausing inside a stage's open transaction so a test can SIGKILL it there.

Usage: ``python pause_run.py POINT KOKEILU-ARGS...`` with POINT one of

``load=NAME``    inside the transaction that loads the delivery file NAME: its rows, its
                 manifest row and its validation rows inserted, nothing committed yet;
``estimate``     inside the transaction that writes the results: every results row inserted,
                 the commit not yet issued.

On reaching the point it prints ``PAUSED POINT`` on stdout and sleeps until it is killed.
The pause wraps pipeline functions from the outside; it changes no data and adds no hook to
the pipeline, so what the kill interrupts is the real ``kokeilu run``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

PAUSE_SECONDS = 600


def pause(point: str) -> None:
    """Announce the point and wait to be killed."""
    print(f"PAUSED {point}", flush=True)
    time.sleep(PAUSE_SECONDS)
    raise SystemExit(f"pause at {point} was not ended by a kill within {PAUSE_SECONDS} s")


def pause_in_file_load(name: str) -> None:
    """Pause inside the transaction that writes the batch of files holding ``name`` (before its inserts)."""
    import pipeline.load as load

    original = load._validation_rows

    def validation_rows(run_id: str, now: Any, f: Any, result: Any) -> list[tuple]:
        rows = original(run_id, now, f, result)
        if f.name == name:
            pause("load")
        return rows

    load._validation_rows = validation_rows


class _PauseAfterLastItem(dict):
    """The results tables, pausing when the writer asks for the item after the last one."""

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        yield from list(super().items())
        pause("estimate")


def pause_in_results_write() -> None:
    """Pause after every results table is inserted, before the results transaction commits."""
    import pipeline.analysis as analysis

    original = analysis.estimate_all

    def estimate_all(con: Any, config: Any, **kwargs: Any) -> dict[str, Any]:
        return _PauseAfterLastItem(original(con, config, **kwargs))

    analysis.estimate_all = estimate_all


def main() -> None:
    """Install the pause named by the first argument, then run the kokeilu command in the rest."""
    point, args = sys.argv[1], sys.argv[2:]
    if point.startswith("load="):
        pause_in_file_load(point.removeprefix("load="))
    elif point == "estimate":
        pause_in_results_write()
    else:
        raise SystemExit(f"unknown pause point {point!r}: expected load=NAME or estimate")
    from flows.cli import main as kokeilu

    sys.argv = ["kokeilu", *args]
    kokeilu()


if __name__ == "__main__":
    main()
