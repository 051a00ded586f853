"""The pilot's schedule on the cells' calendar: months as integers, event times, treatment indicators.

Shared by :mod:`pipeline.estimates` (the event study) and :mod:`pipeline.robustness`
(the anticipation rerun); it sits below both so that neither imports the other.
"""

from __future__ import annotations

import numpy as np

from pipeline.did.cells import Cells


def month_numbers(cells: Cells) -> np.ndarray:
    """(T,) months of the cells as integers (months since 1970-01), for arithmetic on schedules."""
    return np.array([str(t)[:7] for t in cells.times], dtype="datetime64[M]").astype(np.int64)


def event_times(cells: Cells, schedule: dict[str, tuple[str, str]]) -> np.ndarray:
    """(G, T) months since each treated municipality's start; NaN for comparison municipalities."""
    E = np.full(cells.sums.shape, np.nan)
    months = month_numbers(cells)
    for g, code in enumerate(cells.clusters):
        if code in schedule:
            start = np.datetime64(schedule[code][0], "M").astype(np.int64)
            E[g] = months - start
    return E


def treatment_from_schedule(cells: Cells, schedule: dict[str, tuple[str, str]]) -> np.ndarray:
    """(G, T) 0/1 pilot indicator of the cells' municipalities and months under ``schedule``."""
    months = month_numbers(cells)
    treat = np.zeros(cells.sums.shape)
    for g, code in enumerate(cells.clusters):
        if code in schedule:
            start, end = (np.datetime64(m, "M").astype(np.int64) for m in schedule[code])
            treat[g] = (months >= start) & (months <= end)
    return treat
