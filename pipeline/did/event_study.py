"""Event study: one dummy per event time (except the reference) with unit and period effects."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from pipeline.did.cells import Cells
from pipeline.did.panel import Aggregated, check_path, choose_path, fit_general, prepare
from pipeline.did.results import (
    EventStudyResult,
    count_params,
    jackknife_se,
    small_sample_factor,
    t_inference,
)
from pipeline.did.twfe import fit_cells, leave_one_cluster_out

if TYPE_CHECKING:
    from pipeline.did.panel import Frame
    from pipeline.did.results import PathOption


def event_levels(event_time: np.ndarray, reference: int) -> np.ndarray:
    """Sorted event times that get a dummy: every observed (non-NaN) value except ``reference``."""
    e = np.asarray(event_time, dtype=float)
    vals = np.unique(e[~np.isnan(e)])
    if np.any(vals != np.round(vals)):
        raise ValueError("event_time: expected integers")
    return vals[vals != reference].astype(np.int64)


def event_dummies(event_time: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(K, ...) 0/1 array: dummy k is 1 where ``event_time == levels[k]``; NaN (never treated) is 0 everywhere."""
    e = np.asarray(event_time, dtype=float)
    return (e[None] == np.asarray(levels, dtype=float).reshape((-1,) + (1,) * e.ndim)).astype(float)


def event_study_cells(
    cells: Cells,
    event_time: np.ndarray,
    *,
    reference: int = -1,
    alpha: float = 0.05,
    cv3: bool = True,
) -> EventStudyResult:
    r"""Event study from cluster x period sums (the aggregated path).

    .. math::

        y_{it} = a_i + g_t + \sum_{e \ne r} \beta_e \,1\{E_{g(i)t} = e\} + e_{it}

    ``event_time`` is (G, T): the period minus the cluster's start period, NaN
    for never-treated clusters. ``cells.treat`` is not used.
    """
    E = np.asarray(event_time, dtype=float)
    if E.shape != cells.sums.shape:
        raise ValueError(f"event_time: expected shape {cells.sums.shape}, found {E.shape}")
    levels = event_levels(E, reference)
    X = event_dummies(E, levels)
    n, sums = cells.n.astype(float), cells.sums.astype(float)
    fit = fit_cells(n, sums, X)
    jack = leave_one_cluster_out(n, sums, X) if cv3 else np.full((fit.n_clusters, len(levels)), np.nan)
    K = count_params(n_regressors=len(levels), n_units=fit.n_units, n_periods=fit.n_periods, units_nested=True)
    return make_event_result(
        levels=levels,
        beta=fit.beta,
        vcov_raw=fit.vcov_raw,
        jack=jack,
        n_obs=fit.n_obs,
        n_params=K,
        n_units=fit.n_units,
        n_clusters=fit.n_clusters,
        n_treated_clusters=int(np.any(~np.isnan(E), axis=1).sum()),
        path="aggregated",
        reference=reference,
        alpha=alpha,
    )


def make_event_result(
    *,
    levels: np.ndarray,
    beta: np.ndarray,
    vcov_raw: np.ndarray,
    jack: np.ndarray,
    n_obs: int,
    n_params: int,
    n_units: int,
    n_clusters: int,
    n_treated_clusters: int,
    path: str,
    reference: int,
    alpha: float,
    fallback_reason: str | None = None,
) -> EventStudyResult:
    """Apply the small-sample convention and t(G-1) inference; both paths end here."""
    c = small_sample_factor(n_obs=n_obs, n_params=n_params, n_clusters=n_clusters)
    V = c * np.asarray(vcov_raw, dtype=float)
    se = np.sqrt(np.diag(V))
    se3 = jackknife_se(jack)
    df = n_clusters - 1
    inf = [t_inference(float(b), float(s), df, alpha) for b, s in zip(beta, se)]
    inf3 = [t_inference(float(b), float(s), df, alpha) for b, s in zip(beta, se3)]
    return EventStudyResult(
        event_times=np.asarray(levels, dtype=np.int64),
        estimate=np.asarray(beta, dtype=float),
        std_error=se,
        t_stat=np.array([i.t_stat for i in inf]),
        p_value=np.array([i.p_value for i in inf]),
        ci_low=np.array([i.ci_low for i in inf]),
        ci_high=np.array([i.ci_high for i in inf]),
        std_error_cv3=se3,
        p_value_cv3=np.array([i.p_value for i in inf3]),
        vcov=V,
        n_obs=n_obs,
        n_units=n_units,
        n_clusters=n_clusters,
        n_treated_clusters=n_treated_clusters,
        path=path,  # type: ignore[arg-type]
        reference=reference,
        fallback_reason=fallback_reason,
        alpha=alpha,
        ssc=c,
    )


def event_study(
    panel: Frame,
    *,
    unit: str,
    time: str,
    outcome: str,
    cluster: str,
    event_time: str,
    reference: int = -1,
    alpha: float = 0.05,
    path: PathOption = "auto",
    cv3: bool = True,
) -> EventStudyResult:
    r"""Event-study regression on a long panel, clustered by ``cluster``.

    .. math::

        y_{it} = a_i + g_t + \sum_{e \ne r} \beta_e \,1\{E_{it} = e\} + e_{it}

    ``event_time`` names a column holding, for units in ever-treated clusters,
    the period minus their cluster's start period, and null for never-treated
    units (all their dummies are zero). ``reference`` (default -1) gets no
    dummy. Dispatch as in :func:`~pipeline.did.twfe.twfe`; the event time
    must be constant within cluster x period for the aggregated path.
    :meth:`EventStudyResult.pretrend_test` tests the leads jointly.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"i": [1, 1, 1, 2, 2, 2, 3, 3, 3], "t": [0, 1, 2] * 3, "g": [1, 1, 1, 2, 2, 2, 3, 3, 3],
    ...                    "e": [-1, 0, 1, None, None, None, None, None, None],
    ...                    "y": [1.0, 3.0, 4.0, 1.0, 1.5, 2.0, 0.0, 0.5, 1.0]})
    >>> r = event_study(df, unit="i", time="t", outcome="y", cluster="g", event_time="e", cv3=False)
    >>> [round(float(b), 6) for b in r.estimate]
    [1.5, 2.0]
    """
    check_path(path)
    df = prepare(panel, [unit, time, outcome, cluster, event_time], nullable=(event_time,))
    return fit_event_study(df, unit=unit, time=time, outcome=outcome, cluster=cluster, event_time=event_time,
                           reference=reference, alpha=alpha, path=path, cv3=cv3)[0]


def fit_event_study(
    df: pl.DataFrame, *, unit: str, time: str, outcome: str, cluster: str, event_time: str, reference: int,
    alpha: float, path: PathOption, cv3: bool,
) -> tuple[EventStudyResult, Aggregated | None]:
    """The event study on a prepared frame, with the aggregated inputs when that path ran (for the inference)."""
    if not (df.schema[event_time].is_integer() or df.schema[event_time].is_float() or df.schema[event_time] == pl.Null):
        raise ValueError(f"event_time {event_time!r}: expected integers, found {df.schema[event_time]}")
    agg, reason = choose_path(df, unit=unit, time=time, outcome=outcome, cluster=cluster, constant=[event_time],
                              path=path)
    if agg is not None:
        E = agg.extra[event_time]
        cells = agg.cells.with_treatment(np.where(np.isnan(E), 0.0, (E >= 0).astype(float)))
        return event_study_cells(cells, E, reference=reference, alpha=alpha, cv3=cv3), Aggregated(cells, agg.extra)
    e = df[event_time].cast(pl.Float64).fill_null(np.nan).to_numpy()
    levels = event_levels(e, reference)
    X = event_dummies(e, levels).T
    fit = fit_general(df, X, unit=unit, time=time, outcome=outcome, cluster=cluster, cv3=cv3)
    return make_event_result(
        levels=levels,
        beta=fit.beta,
        vcov_raw=fit.vcov_raw,
        jack=fit.jack,
        n_obs=fit.n_obs,
        n_params=fit.n_params,
        n_units=fit.n_units,
        n_clusters=fit.n_clusters,
        n_treated_clusters=df.filter(pl.col(event_time).is_not_null())[cluster].n_unique(),
        path="general",
        reference=reference,
        alpha=alpha,
        fallback_reason=reason,
    ), None
