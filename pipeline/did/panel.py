"""From a long panel to the estimators: reduce to :class:`Cells` when the design allows, else linearmodels.

The aggregated path needs three properties of the panel, checked here with two
group-bys: every unit is observed once in every period (balanced, no duplicate
unit-period), every unit belongs to one cluster, and the regressors (treatment,
event time) are constant within cluster x period. :func:`fit_general` is the
fallback and the independent check: ``PanelOLS`` with entity and time effects,
its raw clustered sandwich rescaled to the package's small-sample convention.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np
import polars as pl

from pipeline.did.cells import Cells
from pipeline.did.results import PATH_OPTIONS, PathOption, count_params

if TYPE_CHECKING:  # pandas is imported where it is used: the aggregated path never needs it
    import pandas as pd

Frame = Union[pl.DataFrame, "pd.DataFrame"]
"""A long panel: polars or pandas, one row per unit and period."""


class NotAggregable(ValueError):
    """The panel does not qualify for the aggregated path; the message says why."""


def check_path(path: str) -> PathOption:
    """Validate the ``path`` option at the boundary."""
    if path not in PATH_OPTIONS:
        raise ValueError(f"path: expected one of {PATH_OPTIONS}, found {path!r}")
    return path  # type: ignore[return-value]


def prepare(panel: Frame, columns: list[str], *, nullable: tuple[str, ...] = ()) -> pl.DataFrame:
    """The named columns as a polars frame; raise if one is missing or holds nulls (NaN outcomes too).

    A column named twice (e.g. the unit is also the cluster) is taken once.
    """
    columns = list(dict.fromkeys(columns))
    pandas = sys.modules.get("pandas")  # a pandas frame exists only once pandas is imported
    if pandas is not None and isinstance(panel, pandas.DataFrame):
        missing = [c for c in columns if c not in panel.columns]
        if missing:
            raise ValueError(f"panel: expected columns {columns}, missing {missing}")
        df = pl.from_pandas(panel[columns].reset_index(drop=True))
    elif isinstance(panel, pl.DataFrame):
        missing = [c for c in columns if c not in panel.columns]
        if missing:
            raise ValueError(f"panel: expected columns {columns}, missing {missing}")
        df = panel.select(columns)
    else:
        raise TypeError(f"panel: expected a polars or pandas DataFrame, found {type(panel).__name__}")
    if df.height == 0:
        raise ValueError("panel: expected rows, found an empty frame")
    nulls = df.select(pl.col(c).null_count() for c in columns if c not in nullable).row(0, named=True)
    bad = {c: k for c, k in nulls.items() if k}
    if bad:
        raise ValueError(f"panel: expected no missing values, found nulls {bad}")
    for c in columns:
        if df.schema[c].is_float() and c not in nullable and df[c].is_nan().any():
            raise ValueError(f"panel: expected no missing values, found NaN in {c!r}")
    return df


@dataclass(frozen=True)
class Aggregated:
    """Cells of a qualifying panel plus other cluster x period constant columns as (G, T) arrays."""

    cells: Cells
    extra: dict[str, np.ndarray]


def aggregate(
    df: pl.DataFrame, *, unit: str, time: str, outcome: str, cluster: str, constant: list[str]
) -> Aggregated:
    """Check the design and reduce to cluster x period sums; raise :class:`NotAggregable` with the reason.

    ``constant[0]`` becomes ``Cells.treat``; every column in ``constant`` must be
    constant within cluster x period (nulls allowed only for a whole cell) and is
    returned in ``extra`` as a float (G, T) array with NaN for null.
    """
    T = df[time].n_unique()
    per_unit = df.group_by(unit).agg(
        pl.len().alias("rows"), pl.col(time).n_unique().alias("nt"), pl.col(cluster).n_unique().alias("nc")
    )
    _first_bad(per_unit, pl.col("nc") > 1, unit, "is in {nc} clusters: units must be nested in clusters")
    _first_bad(per_unit, pl.col("rows") > pl.col("nt"), unit, "has duplicate periods ({rows} rows, {nt} periods)")
    _first_bad(per_unit, pl.col("nt") < T, unit, "is observed in {nt} of {T} periods: the panel is unbalanced", T=T)
    aggs = [pl.col(outcome).cast(pl.Float64).sum().alias("_sum"), pl.len().alias("_n")]
    for i, c in enumerate(constant):
        aggs += [pl.col(c).min().alias(f"_mn{i}"), pl.col(c).max().alias(f"_mx{i}"), pl.col(c).null_count().alias(f"_nn{i}")]
    cells = df.group_by(cluster, time).agg(aggs).sort(cluster, time)
    for i, c in enumerate(constant):
        same = ((pl.col(f"_nn{i}") == 0) & (pl.col(f"_mn{i}") == pl.col(f"_mx{i}"))) | (pl.col(f"_nn{i}") == pl.col("_n"))
        bad = cells.filter(~same.fill_null(False))
        if bad.height:
            r = bad.row(0, named=True)
            raise NotAggregable(
                f"{c!r} varies within cluster {r[cluster]!r} in period {r[time]!r} "
                f"(from {r[f'_mn{i}']} to {r[f'_mx{i}']}): it must be constant within cluster x period"
            )
    G = cells[cluster].n_unique()
    n = cells["_n"].to_numpy().reshape(G, T)
    out = Cells(
        clusters=cells[cluster].to_numpy().reshape(G, T)[:, 0],
        times=cells[time].to_numpy()[:T],
        n=n[:, 0].astype(np.int64),
        sums=cells["_sum"].to_numpy().reshape(G, T).astype(float),
        treat=cells["_mn0"].cast(pl.Float64).to_numpy().reshape(G, T) if constant else np.zeros((G, T)),
    )
    extra = {c: cells[f"_mn{i}"].cast(pl.Float64).fill_null(np.nan).to_numpy().reshape(G, T) for i, c in enumerate(constant)}
    return Aggregated(out, extra)


def choose_path(
    df: pl.DataFrame, *, unit: str, time: str, outcome: str, cluster: str, constant: list[str], path: PathOption
) -> tuple[Aggregated | None, str | None]:
    """The one choice between the paths: the aggregated inputs, or None and (on fallback) the reason.

    ``path="general"`` gives (None, None); ``"aggregated"`` raises
    :class:`NotAggregable` if the panel does not qualify; ``"auto"`` falls back
    to the general path with the reason.
    """
    check_path(path)
    if path == "general":
        return None, None
    try:
        return aggregate(df, unit=unit, time=time, outcome=outcome, cluster=cluster, constant=constant), None
    except NotAggregable as exc:
        if path == "aggregated":
            raise
        return None, str(exc)


def _first_bad(frame: pl.DataFrame, cond: pl.Expr, key: str, what: str, **fmt: object) -> None:
    bad = frame.filter(cond)
    if bad.height:
        r = bad.row(0, named=True)
        raise NotAggregable(f"{bad.height} unit(s) fail: {key} {r[key]!r} " + what.format(**r, **fmt))


def cells_from_panel(panel: Frame, *, unit: str, time: str, outcome: str, treatment: str, cluster: str) -> Cells:
    """Reduce a qualifying long panel to :class:`Cells`; raise :class:`NotAggregable` with the reason otherwise."""
    df = prepare(panel, [unit, time, outcome, treatment, cluster])
    return aggregate(df, unit=unit, time=time, outcome=outcome, cluster=cluster, constant=[treatment]).cells


def cells_from_sums(frame: Frame, *, cluster: str, time: str, sum_col: str, n_col: str, treatment: str) -> Cells:
    """:class:`Cells` from a pre-aggregated frame, one row per cluster x period with the outcome sum and unit count.

    The frame must cover every cluster in every period once, with the same
    (positive) number of units in every period of a cluster, i.e. come from a
    balanced panel with units nested in clusters.
    """
    df = prepare(frame, [cluster, time, sum_col, n_col, treatment]).sort(cluster, time)
    G, T = df[cluster].n_unique(), df[time].n_unique()
    if df.select(pl.struct(cluster, time).n_unique()).item() != df.height:
        raise ValueError(f"cells_from_sums: expected one row per ({cluster}, {time}), found duplicates")
    if df.height != G * T:
        raise ValueError(f"cells_from_sums: expected {G} clusters x {T} periods = {G * T} rows, found {df.height}")
    n = df[n_col].to_numpy().reshape(G, T)
    if np.any(n != n[:, :1]):
        g = int(np.flatnonzero(np.any(n != n[:, :1], axis=1))[0])
        raise ValueError(
            f"cells_from_sums: {n_col!r} of cluster {df[cluster][g * T]!r} varies over periods "
            f"({n[g].min()}..{n[g].max()}): expected a balanced panel"
        )
    return Cells(
        clusters=df[cluster].to_numpy().reshape(G, T)[:, 0],
        times=df[time].to_numpy()[:T],
        n=n[:, 0].astype(np.int64),
        sums=df[sum_col].cast(pl.Float64).to_numpy().reshape(G, T),
        treat=df[treatment].cast(pl.Float64).to_numpy().reshape(G, T),
    )


@dataclass(frozen=True)
class GeneralFit:
    """Coefficients, unscaled clustered sandwich, leave-one-cluster-out estimates and sizes of a linearmodels fit."""

    beta: np.ndarray
    vcov_raw: np.ndarray
    jack: np.ndarray
    n_obs: int
    n_units: int
    n_periods: int
    n_clusters: int
    units_nested: bool

    @property
    def n_params(self) -> int:
        """K of the small-sample factor, counted as pyfixest counts it."""
        return count_params(
            n_regressors=len(self.beta), n_units=self.n_units, n_periods=self.n_periods, units_nested=self.units_nested
        )


def fit_general(
    df: pl.DataFrame, X: np.ndarray, *, unit: str, time: str, outcome: str, cluster: str, cv3: bool = True
) -> GeneralFit:
    """Unit + time effects regression of ``outcome`` on the columns of ``X`` (N, K) with linearmodels.

    ``PanelOLS(entity_effects=True, time_effects=True)`` fitted with
    ``cov_type="clustered", debiased=False, group_debias=False, auto_df=False,
    count_effects=False``: linearmodels then applies no scaling at all
    (n / n_eff with n_eff = n), so ``vcov_raw`` is the bare sandwich
    :math:`A^{-1} (\\sum_g s_g s_g') A^{-1}` to which the caller applies the
    package's small-sample factor.
    """
    codes = df.select(
        pl.col(unit).rank("dense").alias("u"), pl.col(time).rank("dense").alias("t"), pl.col(cluster).rank("dense").alias("g")
    )
    u, t, g = (codes[c].to_numpy().astype(np.int64) for c in ("u", "t", "g"))
    y = df[outcome].cast(pl.Float64).to_numpy()
    X = np.asarray(X, dtype=float).reshape(len(y), -1)
    units_nested = bool(df.group_by(unit).agg(pl.col(cluster).n_unique().alias("_nc")).get_column("_nc").max() == 1)
    beta, V = _panelols(y, X, u, t, g, cov=True)
    G = int(g.max())
    jack = np.full((G, X.shape[1]), np.nan)
    if cv3:
        for k in range(1, G + 1):
            keep = g != k
            cols = np.flatnonzero(np.any(X[keep] != 0, axis=0))
            try:
                jack[k - 1, cols] = _panelols(y[keep], X[keep][:, cols], u[keep], t[keep], g[keep], cov=False)[0]
            except Exception:  # noqa: BLE001 - a leave-one-out fit that is not identified gives NaN
                pass
    return GeneralFit(beta, V, jack, len(y), int(u.max()), int(t.max()), G, units_nested)


def _panelols(y, X, u, t, g, *, cov: bool):  # type: ignore[no-untyped-def]
    import pandas as pd
    from linearmodels import PanelOLS

    index = pd.MultiIndex.from_arrays([u, t], names=["unit", "time"])
    exog = pd.DataFrame(X, index=index, columns=[f"x{j}" for j in range(X.shape[1])])
    mod = PanelOLS(pd.Series(y, index=index, name="y"), exog, entity_effects=True, time_effects=True)
    if not cov:
        res = mod.fit(cov_type="unadjusted", debiased=False, low_memory=True)
        return res.params.to_numpy(), None
    res = mod.fit(
        low_memory=True,
        cov_type="clustered",
        clusters=pd.DataFrame({"g": g}, index=index),
        debiased=False,
        group_debias=False,
        auto_df=False,
        count_effects=False,
    )
    return res.params.to_numpy(), res.cov.to_numpy()
