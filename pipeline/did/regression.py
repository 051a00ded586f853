r"""Regression estimators on a :class:`~pipeline.did.data.Panel`: ``twfe``, ``event_study`` and ``did_2x2``.

``twfe`` and ``event_study`` choose once (:func:`~pipeline.did.panel.choose_path`)
between the aggregated path (cluster x period sums: a balanced panel, units
nested in clusters, regressors constant within cluster x period) and the general
one (linearmodels, any panel); the fit records the path and, on fallback, why.
``did_2x2`` is the two-period regression with unit and period effects on any
(unbalanced) two-period panel.

Inference is on the fit: ``cv3()``, ``wild_bootstrap(...)``,
``randomization_test(...)``; assignments for randomization come from the panel's
own treatment paths (the design: each treated cluster's path, reassigned to
distinct clusters) unless given explicitly as an (R, G, T) array of cluster x
period treatments, clusters and periods in sorted order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from pipeline.did.data import Panel
from pipeline.did.event_study import fit_event_study
from pipeline.did.fit import (
    Fit,
    InferenceResult,
    bootstrap_result,
    check_draws,
    check_panel,
    check_weights,
    codes,
    randomization_result,
)
from pipeline.did.inference import general as _general
from pipeline.did.inference.bootstrap import wild_cluster_bootstrap
from pipeline.did.inference.event_bootstrap import sup_t_bands, sup_t_bands_rows
from pipeline.did.inference.pretrend import pretrend_randomization
from pipeline.did.inference.randomization import design_paths
from pipeline.did.inference.randomization import randomization_test as _cells_randomization
from pipeline.did.ols import did_ols
from pipeline.did.panel import prepare
from pipeline.did.results import PathOption, jackknife_se, t_inference
from pipeline.did.twfe import fit_twfe

_EVENT_TIME = "_event_time"


class _RowsMixin:
    """The general path's demeaned rows, built on first use (one-regressor regressions)."""

    _df: pl.DataFrame
    _rows_cache: _general.Rows | None = None

    def _general_rows(self, *, unit: str, time: str, cluster: str, treatment: str, outcome: str,
                      std_error: float) -> _general.Rows:
        if self._rows_cache is None:
            u, t, g = codes(self._df, unit, time, cluster)
            raw = _general.rows(self._df[outcome].cast(pl.Float64).to_numpy(),
                                self._df[treatment].cast(pl.Float64).to_numpy(), [u, t], g, t, 1.0)
            c = (std_error / raw.fit().se) ** 2  # the estimator's own small-sample factor
            self._rows_cache = _general.Rows(raw.y, raw.d, raw.g, raw.t, raw.factors, float(c))
        return self._rows_cache

    def _rows_general(self) -> _general.Rows:
        """The demeaned rows of this fit's panel, scaled to its own standard error."""
        p = self.panel  # type: ignore[attr-defined]
        return self._general_rows(unit=p.unit, time=p.time, cluster=p.cluster, treatment=p.treatment,
                                  outcome=self.outcome, std_error=self.result.std_error)  # type: ignore[attr-defined]

    def _general_randomization(self, rows: _general.Rows, assignments: Any, *, draws: int | None, seed: int,
                               null: float, max_assignments: int | None, alpha: float) -> InferenceResult:
        D = self._df[self._treatment_col].cast(pl.Float64).to_numpy()
        treat = _general.cluster_paths(rows, D)
        explicit = None if isinstance(assignments, str) and assignments == "design" else _explicit(assignments, treat)
        res = _general.randomization(rows, treat, assignments=explicit, null=null,
                                     max_assignments=20_000 if max_assignments is None else max_assignments,
                                     draws=9_999 if draws is None else draws, seed=seed, alpha=alpha)
        return randomization_result(res)


def _explicit(assignments: Any, treat: np.ndarray) -> np.ndarray:
    """Explicit assignments as an (R, G, T) float array; raise on another shape."""
    if isinstance(assignments, str):
        raise ValueError(f"assignments: expected 'design' or an (R, G, T) array, found {assignments!r}")
    a = np.asarray(assignments, dtype=float)
    if a.ndim != 3 or a.shape[1:] != treat.shape:
        raise ValueError(f"assignments: expected shape (R, {treat.shape[0]}, {treat.shape[1]}), found {a.shape}")
    return a


# -------------------------------------------------------------------- twfe
class TwfeFit(_RowsMixin, Fit):
    r"""Two-way fixed-effects DiD: :math:`y_{it} = a_i + g_t + \beta D_{it} + e_{it}`, CRV1 by cluster, t(G-1)."""

    estimator = "twfe"
    inference = ("cv3", "wild_bootstrap", "randomization_test")

    def __init__(self, panel: Panel, df: pl.DataFrame, outcome: str, result: Any, cells: Any, alpha: float) -> None:
        super().__init__(outcome=outcome, result=result, path=result.path, fallback_reason=result.fallback_reason,
                         alpha=alpha)
        self.panel, self._df, self.cells = panel, df, cells
        self._treatment_col = panel.treatment

    def _rows(self) -> list[dict[str, Any]]:
        r = self.result
        return [{"term": self.panel.treatment, "estimate": r.estimate, "std_error": r.std_error,
                 "statistic": r.t_stat, "df": r.df, "p_value": r.p_value, "ci_low": r.ci_low, "ci_high": r.ci_high,
                 "n_obs": r.n_obs, "n_units": r.n_units, "n_clusters": r.n_clusters,
                 "n_treated_clusters": r.n_treated_clusters, "path": r.path}]

    def cv3(self) -> InferenceResult:
        """Cluster-jackknife (CV3J) standard error with t(G-1) p-value and interval."""
        r = self.result
        inf = t_inference(r.estimate, r.std_error_cv3, r.df, self.alpha)
        return InferenceResult("cv3", inf.t_stat, inf.p_value, inf.ci_low, inf.ci_high, None, False)

    def wild_bootstrap(self, *, restricted: bool = True, weights: str = "webb", draws: int = 9_999, seed: int = 0,
                       null: float = 0.0) -> InferenceResult:
        """Wild cluster bootstrap-t of H0: beta = null (WCR or WCU), on the fit's path."""
        check_weights(weights)
        check_draws(draws)
        if self.cells is not None:
            res = wild_cluster_bootstrap(self.cells, null=null, draws=draws, weights=weights, restricted=restricted,
                                         alpha=self.alpha, seed=seed)
        else:
            res = _general.wild_bootstrap(self._rows_general(), null=null, draws=draws, weights=weights,
                                          restricted=restricted, alpha=self.alpha, seed=seed)
        return bootstrap_result(res)

    def randomization_test(self, assignments: Any = "design", *, draws: int | None = None, seed: int = 0,
                           null: float = 0.0, max_assignments: int | None = None) -> InferenceResult:
        """Randomization test of a constant effect = null, |t| (CRV1) as statistic; interval by inversion."""
        check_draws(draws)
        design = isinstance(assignments, str) and assignments == "design"
        if self.cells is not None and design:
            res = _cells_randomization(self.cells, design_paths(self.cells), null=null,
                                       max_assignments=5_000_000 if max_assignments is None else max_assignments,
                                       draws=9_999 if draws is None else draws, seed=seed, alpha=self.alpha)
            return randomization_result(res)
        return self._general_randomization(self._rows_general(), assignments, draws=draws, seed=seed, null=null,
                                           max_assignments=max_assignments, alpha=self.alpha)


def twfe(panel: Panel, outcome: str, *, path: PathOption = "auto", alpha: float = 0.05, cv3: bool = True) -> TwfeFit:
    r"""Two-way fixed-effects difference in differences of ``outcome`` on the panel's treatment.

    .. math::

        y_{it} = a_i + g_t + \beta D_{it} + e_{it}

    CRV1 standard errors clustered by the panel's cluster with pyfixest's
    small-sample factor, t(G-1) inference. ``path="auto"`` takes the aggregated
    path when the panel qualifies (see the module docstring), else linearmodels.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"i": [1, 1, 2, 2, 3, 3, 4, 4], "t": [0, 1] * 4, "d": [0, 1, 0, 1, 0, 0, 0, 0],
    ...                    "y": [1.0, 3.0, 2.0, 3.5, 1.0, 1.5, 0.5, 1.5]})
    >>> fit = twfe(Panel(df, unit="i", time="t", treatment="d"), "y")
    >>> fit.tidy()["estimate"].round(6).to_list(), fit.path
    ([1.0], 'aggregated')
    """
    p = check_panel(panel, "twfe")
    d = p.require_treatment("twfe")
    df = prepare(p.frame, [p.unit, p.time, outcome, d, p.cluster])
    result, agg = fit_twfe(df, unit=p.unit, time=p.time, outcome=outcome, treatment=d, cluster=p.cluster,
                           path=path, alpha=alpha, cv3=cv3)
    return TwfeFit(p, df, outcome, result, agg.cells if agg is not None else None, alpha)


# ------------------------------------------------------------- event study
class EventStudyFit(Fit):
    r"""Event study: :math:`y_{it} = a_i + g_t + \sum_{e \ne r} \beta_e 1\{E_{it} = e\} + e_{it}`."""

    estimator = "event_study"
    inference = ("cv3", "wild_bootstrap (sup-t band)", "randomization_test (leads, aggregated path)")

    def __init__(self, panel: Panel, df: pl.DataFrame, outcome: str, result: Any, agg: Any, alpha: float) -> None:
        super().__init__(outcome=outcome, result=result, path=result.path, fallback_reason=result.fallback_reason,
                         alpha=alpha)
        self.panel, self._df, self._agg = panel, df, agg

    def _rows(self) -> list[dict[str, Any]]:
        r = self.result
        return [{"term": f"event_time={int(e)}", "estimate": float(r.estimate[k]),
                 "std_error": float(r.std_error[k]), "statistic": float(r.t_stat[k]), "df": r.df,
                 "p_value": float(r.p_value[k]), "ci_low": float(r.ci_low[k]), "ci_high": float(r.ci_high[k]),
                 "n_obs": r.n_obs, "n_units": r.n_units, "n_clusters": r.n_clusters,
                 "n_treated_clusters": r.n_treated_clusters, "path": r.path} for k, e in enumerate(r.event_times)]

    def event_table(self) -> pl.DataFrame:
        """One row per event time: event_time, estimate, CRV1 and CV3 inference, sample sizes."""
        return self.result.tidy()

    def cv3(self) -> InferenceResult:
        """CV3J standard errors per event time (in ``table``); the scalar fields are NaN."""
        r = self.result
        infs = [t_inference(float(b), float(s), r.df, self.alpha) for b, s in zip(r.estimate, r.std_error_cv3)]
        table = pl.DataFrame({"event_time": r.event_times.astype(np.int64), "estimate": r.estimate,
                              "std_error": r.std_error_cv3, "statistic": [i.t_stat for i in infs],
                              "p_value": [i.p_value for i in infs], "ci_low": [i.ci_low for i in infs],
                              "ci_high": [i.ci_high for i in infs]})
        return InferenceResult("cv3", float("nan"), float("nan"), float("nan"), float("nan"), None, False, table)

    def wild_bootstrap(self, *, restricted: bool = False, weights: str = "webb", draws: int = 9_999, seed: int = 0,
                       null: float = 0.0) -> InferenceResult:
        """Sup-t band over the event times (``table``) and the sup-t test that every coefficient is zero.

        The band is the unrestricted (WCU) bootstrap's; ``restricted=True`` or a
        non-zero ``null`` is refused.
        """
        check_weights(weights)
        check_draws(draws)
        if restricted or null != 0.0:
            raise ValueError("event_study.wild_bootstrap: the sup-t band is unrestricted with null 0 "
                             f"(found restricted={restricted}, null={null})")
        r = self.result
        if self._agg is not None:
            b = sup_t_bands(self._agg.cells, self._event_matrix(), reference=r.reference, draws=draws,
                            weights=weights, seed=seed, alpha=self.alpha, ssc=r.ssc)
        else:
            p, df = self.panel, self._df
            e = df[_EVENT_TIME].cast(pl.Float64).fill_null(np.nan).to_numpy()
            X = (e[:, None] == r.event_times[None, :].astype(float)).astype(float)
            u, t, g = codes(df, p.unit, p.time, p.cluster)
            b = sup_t_bands_rows(df[self.outcome].cast(pl.Float64).to_numpy(), X, r.event_times, [u, t], g,
                                 draws=draws, weights=weights, seed=seed, alpha=self.alpha, ssc=r.ssc)
        table = pl.DataFrame({"event_time": b.event_times.astype(np.int64), "estimate": b.estimate,
                              "std_error": b.std_error, "critical_value": [b.critical_value] * len(b.estimate),
                              "ci_low": b.ci_low, "ci_high": b.ci_high})
        return InferenceResult(f"wild_bootstrap_sup_t_{weights}", b.statistic, b.p_value, float("nan"),
                               float("nan"), b.draws, b.exact, table)

    def _event_matrix(self) -> np.ndarray:
        return self._agg.extra[_EVENT_TIME]

    def randomization_test(self, assignments: Any = "design", *, draws: int | None = None, seed: int = 0,
                           null: float = 0.0, max_assignments: int | None = None) -> InferenceResult:
        """Joint test that the leads are zero: F of the leads over seeded reassignments of the clusters' schedules."""
        check_draws(draws)
        if not (isinstance(assignments, str) and assignments == "design") or null != 0.0:
            raise ValueError("event_study.randomization_test: the lead test reassigns the design's schedules "
                             "under the null of no lead effects")
        if self._agg is None:
            raise self._unavailable("randomization_test")
        draws = 999 if draws is None else draws
        E = self._event_matrix()
        try:
            ri = pretrend_randomization(self._agg.cells, E, draws=draws, seed=seed, reference=self.result.reference)
        except (ValueError, np.linalg.LinAlgError) as exc:
            first = int(np.argmax(np.any(E >= 0, axis=0)))
            raise ValueError(f"event_study.randomization_test: the lead test is fitted on the {first} period(s) "
                             f"before the first treated period and is not identified there ({exc})") from None
        return InferenceResult("randomization_leads_F", float(ri.statistic), float(ri.p_value), float("nan"),
                               float("nan"), int(ri.draws) + 1, False)


def event_study(panel: Panel, outcome: str, reference: int = -1, *, path: PathOption = "auto", alpha: float = 0.05,
                cv3: bool = True) -> EventStudyFit:
    r"""Event study of ``outcome``: a dummy per period relative to each unit's first treated period.

    .. math::

        y_{it} = a_i + g_t + \sum_{e \ne r} \beta_e \,1\{E_{it} = e\} + e_{it}

    :math:`E_{it}` counts periods (by rank of the sorted periods) from unit i's
    first treated period; never-treated units have no dummies. ``reference``
    (default -1) gets none. Dispatch as in :func:`twfe`.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"i": [1, 1, 1, 2, 2, 2, 3, 3, 3], "t": [0, 1, 2] * 3, "d": [0, 1, 1] + [0] * 6,
    ...                    "y": [1.0, 3.0, 4.0, 1.0, 1.5, 2.0, 0.0, 0.5, 1.0]})
    >>> fit = event_study(Panel(df, unit="i", time="t", treatment="d"), "y", cv3=False)
    >>> fit.event_table()["estimate"].round(6).to_list()
    [1.5, 2.0]
    """
    p = check_panel(panel, "event_study")
    p.require_treatment("event_study")
    frame = p.frame.with_columns(p.event_time().alias(_EVENT_TIME))
    df = prepare(frame, [p.unit, p.time, outcome, p.cluster, _EVENT_TIME], nullable=(_EVENT_TIME,))
    result, agg = fit_event_study(df, unit=p.unit, time=p.time, outcome=outcome, cluster=p.cluster,
                                  event_time=_EVENT_TIME, reference=reference, alpha=alpha, path=path, cv3=cv3)
    return EventStudyFit(p, df, outcome, result, agg, alpha)


# --------------------------------------------------------------- 2 x 2 DiD
class Did2x2Fit(_RowsMixin, Fit):
    r"""Two-period DiD with unit and period effects by dense OLS: :math:`y_{it} = a_i + b_t + \beta D_{it} + e_{it}`."""

    estimator = "did_2x2"
    inference = ("cv3", "wild_bootstrap", "randomization_test")

    def __init__(self, panel: Panel, df: pl.DataFrame, outcome: str, result: Any, alpha: float) -> None:
        super().__init__(outcome=outcome, result=result, path="general", fallback_reason=None, alpha=alpha)
        self.panel, self._df = panel, df
        self._treatment_col = panel.treatment

    def _arrays(self, df: pl.DataFrame) -> tuple[np.ndarray, ...]:
        p = self.panel
        return (df[self.outcome].cast(pl.Float64).to_numpy(), df[p.treatment].cast(pl.Float64).to_numpy(),
                df[p.unit].to_numpy(), df[p.time].to_numpy(), df[p.cluster].to_numpy())

    def _rows(self) -> list[dict[str, Any]]:
        r = self.result
        return [{"term": self.panel.treatment, "estimate": r.estimate, "std_error": r.std_error,
                 "statistic": r.t_stat, "df": r.n_clusters - 1, "p_value": r.p_value, "ci_low": r.ci_low,
                 "ci_high": r.ci_high, "n_obs": r.n_obs, "n_units": int(self._df[self.panel.unit].n_unique()),
                 "n_clusters": r.n_clusters, "n_treated_clusters": r.n_treated_clusters, "path": "general"}]

    def cv3(self) -> InferenceResult:
        """Cluster jackknife: the regression re-run without each cluster, CV3J, t(G-1)."""
        labels = self._df[self.panel.cluster].unique().sort().to_list()
        leave = np.full(len(labels), np.nan)
        for k, g in enumerate(labels):
            sub = self._df.filter(pl.col(self.panel.cluster) != g)
            try:
                leave[k] = did_ols(*self._arrays(sub), alpha=self.alpha).estimate
            except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
                pass
        se = float(jackknife_se(leave)[0])
        inf = t_inference(self.result.estimate, se, self.result.n_clusters - 1, self.alpha)
        return InferenceResult("cv3", inf.t_stat, inf.p_value, inf.ci_low, inf.ci_high, None, False)

    def wild_bootstrap(self, *, restricted: bool = True, weights: str = "webb", draws: int = 9_999, seed: int = 0,
                       null: float = 0.0) -> InferenceResult:
        """Wild cluster bootstrap-t of H0: beta = null (WCR or WCU) on the demeaned rows."""
        check_weights(weights)
        check_draws(draws)
        return bootstrap_result(_general.wild_bootstrap(self._rows_general(), null=null, draws=draws,
                                                         weights=weights, restricted=restricted, alpha=self.alpha,
                                                         seed=seed))

    def randomization_test(self, assignments: Any = "design", *, draws: int | None = None, seed: int = 0,
                           null: float = 0.0, max_assignments: int | None = None) -> InferenceResult:
        """Randomization test of a constant effect = null, |t| (CRV1) as statistic; interval by inversion."""
        check_draws(draws)
        return self._general_randomization(self._rows_general(), assignments, draws=draws, seed=seed, null=null,
                                           max_assignments=max_assignments, alpha=self.alpha)


def did_2x2(panel: Panel, outcome: str, *, alpha: float = 0.05) -> Did2x2Fit:
    r"""The 2 x 2 difference in differences on a two-period panel (balanced or not).

    .. math::

        y_{it} = a_i + b_t + \beta D_{it} + e_{it},\qquad t \in \{0, 1\}

    by OLS with unit and period dummies (units seen in one period only carry no
    information), CRV1 by cluster with the package's small-sample factor, t(G-1).
    On a balanced panel it is the difference of the four cell means.
    """
    p = check_panel(panel, "did_2x2")
    d = p.require_treatment("did_2x2")
    df = prepare(p.frame, [p.unit, p.time, outcome, d, p.cluster])
    if df[p.time].n_unique() != 2:
        raise ValueError(f"did_2x2: expected two periods, found {df[p.time].n_unique()}")
    fit = Did2x2Fit(p, df, outcome, None, alpha)
    fit.result = did_ols(*fit._arrays(df), alpha=alpha)
    return fit
