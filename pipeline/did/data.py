"""The long panel every estimator takes: :class:`Panel`, checked once at the boundary.

A panel is one row per unit and period with named unit, time and (optionally)
cluster, treatment and weight columns; outcomes are named when an estimator is
called. It accepts a polars or pandas frame or a DuckDB relation and keeps a
polars frame. Every check raises a one-line :class:`ValueError` that says what
was expected and what was found.
"""

from __future__ import annotations

import sys
from typing import Any

import polars as pl


class Panel:
    """A long panel: one row per unit and period, units nested or not in clusters.

    Parameters
    ----------
    data : polars.DataFrame, pandas.DataFrame or duckdb.DuckDBPyRelation
        One row per unit and period; may hold other columns (the outcomes).
    unit, time : str
        Columns naming the unit and the period (any sortable type).
    cluster : str, optional
        Column of the clusters the standard errors are clustered by; the unit
        when not given.
    treatment : str, optional
        0/1 column: whether the unit is treated in the period. Needed by every
        estimator; the panel must then hold never-treated units.
    weights : str, optional
        Positive weights per row. Checked here; the estimators do not take
        weights yet and raise if given.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"i": [1, 1, 2, 2], "t": [0, 1, 0, 1], "d": [0, 1, 0, 0], "y": [1.0, 2.0, 1.0, 1.5]})
    >>> p = Panel(df, unit="i", time="t", treatment="d")
    >>> p.cluster, p.n_units, p.n_periods
    ('i', 2, 2)
    """

    def __init__(self, data: Any, *, unit: str, time: str, cluster: str | None = None,
                 treatment: str | None = None, weights: str | None = None) -> None:
        frame = _to_polars(data)
        self.unit, self.time = unit, time
        self.cluster = cluster if cluster is not None else unit
        self.treatment, self.weights = treatment, weights
        keys = list(dict.fromkeys(c for c in (unit, time, self.cluster, treatment, weights) if c is not None))
        missing = [c for c in keys if c not in frame.columns]
        if missing:
            raise ValueError(f"Panel: expected columns {keys}, missing {missing}")
        if frame.height == 0:
            raise ValueError("Panel: expected rows, found an empty frame")
        nulls = {c: k for c, k in frame.select(pl.col(c).null_count() for c in keys).row(0, named=True).items() if k}
        if nulls:
            raise ValueError(f"Panel: expected no missing values in {keys}, found nulls {nulls}")
        dup = frame.group_by(unit, time).len().filter(pl.col("len") > 1)
        if dup.height:
            r = dup.row(0, named=True)
            raise ValueError(f"Panel: expected one row per ({unit}, {time}), found {dup.height} duplicated pairs, "
                             f"e.g. {unit}={r[unit]!r} {time}={r[time]!r} ({r['len']} rows)")
        if treatment is not None:
            _check_treatment(frame, unit, time, treatment)
        if weights is not None:
            w = frame[weights]
            if not w.dtype.is_numeric() or not bool(((w > 0) & w.cast(pl.Float64).is_finite()).all()):
                raise ValueError(f"Panel: weights {weights!r} must be positive and finite")
        self.frame = frame

    def __repr__(self) -> str:
        return (f"Panel({self.frame.height} rows, unit={self.unit!r}, time={self.time!r}, cluster={self.cluster!r}, "
                f"treatment={self.treatment!r})")

    @property
    def n_units(self) -> int:
        """Number of distinct units."""
        return int(self.frame[self.unit].n_unique())

    @property
    def n_periods(self) -> int:
        """Number of distinct periods."""
        return int(self.frame[self.time].n_unique())

    @property
    def n_clusters(self) -> int:
        """Number of distinct clusters."""
        return int(self.frame[self.cluster].n_unique())

    def require_treatment(self, estimator: str) -> str:
        """The treatment column; raise if the panel was built without one."""
        if self.treatment is None:
            raise ValueError(f"{estimator}: expected a Panel with treatment=..., found none")
        if self.weights is not None:
            raise ValueError(f"{estimator}: weights are not supported yet, found weights={self.weights!r}")
        return self.treatment

    def event_time(self) -> pl.Series:
        """Periods since the unit's first treated period (by rank of the sorted periods); null if never treated."""
        d = self.require_treatment("event_time")
        rank = pl.col(self.time).rank("dense").cast(pl.Int64)
        first = pl.when(pl.col(d) != 0).then(rank).otherwise(None).min().over(self.unit)
        return self.frame.select((rank - first).alias("_event_time"))["_event_time"]


def _to_polars(data: Any) -> pl.DataFrame:
    """A polars frame from polars, pandas or a DuckDB relation."""
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pl.LazyFrame):
        return data.collect()
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        return pl.from_pandas(data.reset_index(drop=True))
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(data, duckdb.DuckDBPyRelation):
        return data.pl()
    raise TypeError(f"Panel: expected a polars or pandas DataFrame or a DuckDB relation, found {type(data).__name__}")


def _check_treatment(frame: pl.DataFrame, unit: str, time: str, treatment: str) -> None:
    """0/1 values and some never-treated units."""
    d = frame[treatment]
    if not d.dtype.is_numeric() and d.dtype != pl.Boolean:
        raise ValueError(f"Panel: treatment {treatment!r} must be 0/1, found dtype {d.dtype}")
    bad = frame.filter(~pl.col(treatment).cast(pl.Float64).is_in([0.0, 1.0]))
    if bad.height:
        r = bad.row(0, named=True)
        raise ValueError(f"Panel: treatment {treatment!r} must be 0/1, found {r[treatment]!r} "
                         f"({unit}={r[unit]!r} {time}={r[time]!r})")
    ever = frame.group_by(unit).agg((pl.col(treatment).cast(pl.Float64) != 0).any().alias("_ever"))["_ever"]
    if bool(ever.all()):
        raise ValueError(f"Panel: expected never-treated units, found none ({ever.len()} units all treated "
                         f"in some period)")

