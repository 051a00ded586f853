r"""Callaway and Sant'Anna (2021) group-time average treatment effects on a balanced panel.

For a cohort g (the units first treated in period g) and a period t, the
group-time effect is

.. math::

    ATT(g, t) = E[Y_t(g) - Y_t(0) \mid G = g],

identified under parallel trends by a 2x2 comparison of the cohort (G = 1)
with comparison units (C = 1) between a base period b and t. With
:math:`\Delta Y = Y_t - Y_b`, its doubly robust form (Sant'Anna and Zhao 2020) is

.. math::

    ATT(g, t) = E\left[\frac{G}{E[G]}\,(\Delta Y - m_{g,t}(X))\right]
        - E\left[\frac{p_g(X)\,C}{1 - p_g(X)}\,(\Delta Y - m_{g,t}(X))\right]
          \Big/ E\left[\frac{p_g(X)\,C}{1 - p_g(X)}\right]

(``method="dr"``), with :math:`p_g` a logit propensity score of the cohort
against the comparison units and :math:`m_{g,t}` the OLS regression of
:math:`\Delta Y` on X among the comparison units. ``"reg"`` keeps only the
outcome regression and ``"ipw"`` only the (Hajek-normalised) propensity weights. Without covariates all three are the
difference of the cohort's and the comparison group's mean changes.

Every number here follows R ``did`` 2.5.1 (``att_gt`` with ``panel = TRUE``
and ``aggte``) and the DRDID panel estimators it calls (``drdid_panel``,
``reg_did_panel``, ``std_ipw_did_panel``), including their influence functions,
the n/n1 rescaling of each cell's influence function, the analytic standard
error :math:`\sqrt{\sum_i \psi_i^2}/n`, the cluster-sum form when a cluster
column is given, and the estimated-weight term (``wif``) of the aggregations.

References
----------
Callaway, B. and Sant'Anna, P. H. C. (2021). Difference-in-differences with
multiple time periods. *Journal of Econometrics* 225(2), 200-230.

Sant'Anna, P. H. C. and Zhao, J. (2020). Doubly robust difference-in-differences
estimators. *Journal of Econometrics* 219(1), 101-122.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import polars as pl
from scipy import linalg, special

Control = Literal["never_treated", "not_yet_treated"]
"""The comparison group: units never treated, or also those not yet treated by the later period."""

Method = Literal["dr", "reg", "ipw"]
"""The 2x2 estimator: doubly robust, outcome regression, or standardised inverse probability weighting."""

BasePeriod = Literal["varying", "universal"]
"""Pre-treatment cells compare with the period before (varying) or with g - 1 - anticipation (universal)."""

AggregationType = Literal["simple", "dynamic", "group", "calendar"]
"""The summaries of :meth:`GroupTimeResult.aggregate`, as R ``did``'s ``aggte(type=)``."""

_EPS = np.finfo(float).eps
_SE_FLOOR = np.sqrt(_EPS) * 10  # R did reports a standard error at or below this as missing


class _CellFailed(ValueError):
    """A 2x2 comparison could not be estimated (overlap violated or a singular design)."""


@dataclass(frozen=True)
class GroupTimeSpec:
    """The validated options of :func:`group_time_frame`."""

    outcome: str
    unit: str
    time: str
    cohort: str
    cluster: str | None = None
    control: Control = "never_treated"
    covariates: tuple[str, ...] = ()
    method: Method = "dr"
    base_period: BasePeriod = "varying"
    anticipation: int = 0
    alpha: float = 0.05

    def __post_init__(self) -> None:
        for name, alias in (("control", Control), ("method", Method), ("base_period", BasePeriod)):
            if getattr(self, name) not in get_args(alias):
                raise ValueError(f"{name}: expected one of {get_args(alias)}, found {getattr(self, name)!r}")
        if not isinstance(self.anticipation, int) or self.anticipation < 0:
            raise ValueError(f"anticipation: expected a non-negative integer, found {self.anticipation!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha: expected a number in (0, 1), found {self.alpha!r}")


def _z(alpha: float) -> float:
    return float(-special.ndtri(alpha / 2))


def _std_errors(inf: np.ndarray, clusters: np.ndarray | None) -> np.ndarray:
    """R did's analytic standard errors of the columns of an n x k influence-function matrix."""
    inf = inf.reshape(inf.shape[0], -1)
    n = inf.shape[0]
    if clusters is not None:  # sum within clusters: sort once, then one reduceat
        order = np.argsort(clusters, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(clusters[order]) != 0])
        inf = np.add.reduceat(inf[order], starts, axis=0)
    se = np.sqrt(np.sum(inf**2, axis=0)) / n
    se[se <= _SE_FLOOR] = np.nan
    return se


@dataclass(frozen=True, eq=False)
class AggregateResult:
    """A summary of the group-time effects (R ``did``'s ``aggte``).

    Attributes
    ----------
    type
        ``"simple"``, ``"dynamic"``, ``"group"`` or ``"calendar"``.
    estimate, std_error
        The overall summary and its analytic standard error.
    table
        By event time (``event_time``), cohort (``group``) or period (``time``):
        estimate, std_error and the pointwise ci_low, ci_high; empty for ``simple``.
    influence_function
        The overall summary's influence function over units (the scale of
        :attr:`GroupTimeResult.influence_function`).
    table_influence
        n_units x rows of ``table``: the influence function of each row's
        estimate, on the same scale (n_units x 0 for ``simple``).
    """

    type: AggregationType
    estimate: float
    std_error: float
    table: pl.DataFrame
    influence_function: np.ndarray
    alpha: float = 0.05
    table_influence: np.ndarray | None = field(default=None, repr=False)

    @property
    def ci_low(self) -> float:
        """Lower end of the pointwise 1 - alpha interval of the overall estimate."""
        return self.estimate - _z(self.alpha) * self.std_error

    @property
    def ci_high(self) -> float:
        """Upper end of the pointwise 1 - alpha interval of the overall estimate."""
        return self.estimate + _z(self.alpha) * self.std_error

    def tidy(self) -> pl.DataFrame:
        """The per-event-time, per-group or per-period estimates (empty for ``simple``)."""
        return self.table


@dataclass(frozen=True, eq=False)
class GroupTimeResult:
    """Group-time effects with their influence functions.

    Attributes
    ----------
    table
        One row per (group, time): estimate, std_error, ci_low, ci_high
        (pointwise); a cell that could not be estimated is null.
    influence_function
        n_units x cells, rows in the order of ``units``, columns in the order of
        ``table``, on R ``did``'s scale: the standard error of cell j is
        ``sqrt(sum(influence_function[:, j] ** 2)) / n_units`` and a multiplier
        bootstrap draw is ``influence_function.T @ v / n_units``. A missing
        cell's column is NaN; the universal base period's reference cell is 0.
    units, cohorts
        The unit ids and their first treated periods (``inf``: never treated)
        after R ``did``'s pre-processing (units treated in the first period dropped).
    periods, groups
        The periods of the panel and the cohorts with group-time effects.
    spec
        The options of the fit.
    clusters
        Integer cluster codes per unit, or None for unit-level standard errors.
    """

    table: pl.DataFrame
    influence_function: np.ndarray
    units: pl.Series
    cohorts: np.ndarray
    periods: np.ndarray
    groups: np.ndarray
    spec: GroupTimeSpec
    clusters: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_units(self) -> int:
        """Number of units (rows of the influence function)."""
        return int(self.influence_function.shape[0])

    def tidy(self) -> pl.DataFrame:
        """One row per (group, time): estimate, standard error and pointwise interval."""
        return self.table

    def aggregate(
        self,
        type: AggregationType = "group",  # noqa: A002 - the name R did uses
        *,
        min_e: float = -np.inf,
        max_e: float = np.inf,
        balance_e: int | None = None,
        na_rm: bool = False,
    ) -> AggregateResult:
        """Summarise the group-time effects as R ``did``'s ``aggte``.

        Parameters
        ----------
        type
            ``"simple"`` (post-treatment cells weighted by cohort size),
            ``"dynamic"`` (by event time e = t - g, overall = mean over e >= 0),
            ``"group"`` (by cohort, overall weighted by cohort size) or
            ``"calendar"`` (by period, overall = mean over periods).
        min_e, max_e, balance_e
            The event-time window and balancing of ``"dynamic"``; ``max_e``
            also limits ``"simple"`` and ``"group"`` (as in R, counted in
            positions of the sorted periods).
        na_rm
            Drop cells whose estimate is missing; otherwise they are an error.

        Returns
        -------
        AggregateResult
            The overall estimate and the table by event time, group or period.
        """
        if type not in get_args(AggregationType):
            raise ValueError(f"type: expected one of {get_args(AggregationType)}, found {type!r}")
        return _aggregate(self, type, min_e=min_e, max_e=max_e, balance_e=balance_e, na_rm=na_rm)


def group_time_frame(
    data: pl.DataFrame,
    *,
    outcome: str,
    unit: str,
    time: str,
    cohort: str,
    cluster: str | None = None,
    control: Control = "never_treated",
    covariates: Sequence[str] = (),
    method: Method = "dr",
    base_period: BasePeriod = "varying",
    anticipation: int = 0,
    alpha: float = 0.05,
) -> GroupTimeResult:
    r"""Callaway and Sant'Anna (2021) ATT(g, t) for every cohort and period of a balanced panel.

    For each cohort g and period t the 2x2 comparison is between the base
    period b (t - 1 before treatment under ``base_period="varying"``, else the
    last period before g - anticipation) and t, of the cohort (G = 1) with the
    comparison units (C = 1). With :math:`\Delta Y = Y_t - Y_b`, covariates X
    taken in the earlier of the two periods, the logit propensity
    :math:`\hat p(X)` of G against C and the OLS fit :math:`\hat m(X)` of
    :math:`\Delta Y` on X among C, the doubly robust estimate is

    .. math::

        \widehat{ATT}(g,t) = \frac{\sum_i G_i (\Delta Y_i - \hat m(X_i))}{\sum_i G_i}
            - \frac{\sum_i w_i (\Delta Y_i - \hat m(X_i))}{\sum_i w_i},
        \qquad w_i = \frac{\hat p(X_i)\,C_i}{1 - \hat p(X_i)};

    ``"reg"`` drops the weights (second term: :math:`\sum_i G_i \hat m(X_i) / \sum_i G_i`)
    and ``"ipw"`` drops :math:`\hat m`. Standard errors come from the influence
    functions (Sant'Anna and Zhao 2020), computed as R ``did`` 2.5.1 does.

    Parameters
    ----------
    data
        Long panel, one row per unit and period, every unit in every period.
    outcome, unit, time, cohort
        Column names; ``cohort`` is the unit's first treated period (0 or null:
        never treated; a cohort after the last period is never treated too).
    cluster
        Optional time-invariant cluster column for cluster-robust standard errors.
    control
        ``"never_treated"`` or ``"not_yet_treated"`` comparison units.
    covariates
        Columns entering the propensity score and the outcome regression
        (with an intercept).
    method
        ``"dr"``, ``"reg"`` or ``"ipw"``.
    base_period
        ``"varying"`` or ``"universal"``.
    anticipation
        Periods of anticipation before the cohort's first treated period.
    alpha
        Level of the pointwise intervals.

    Returns
    -------
    GroupTimeResult
        The table (group, time, estimate, std_error, ci_low, ci_high), the
        influence functions and :meth:`~GroupTimeResult.aggregate`.

    Raises
    ------
    ValueError
        On an unbalanced panel, missing or non-finite values, a cohort or
        cluster that varies within a unit, or an unknown option.

    Notes
    -----
    As R ``did`` 2.5.1 (``att_gt(..., panel = TRUE, bstrap = FALSE)``) and
    DRDID 1.2: propensity scores are capped at 1 - 1e-6, comparison units with
    a score of 0.995 or more get no weight, and a cell whose largest score is
    0.999 or more (no overlap) or whose design is singular is missing, with a
    warning. Each cell's influence function is computed on its n1 treated and
    comparison units and multiplied by n / n1. The standard error is
    :math:`\sqrt{\sum_i \psi_i^2}/n`; with ``cluster``,
    :math:`\sqrt{\sum_c (\sum_{i \in c} \psi_i)^2}/n` (R's analytic cluster
    form, without a G/(G-1) factor). Units first treated in the first period
    (plus anticipation) are dropped; cohorts after the last period count as
    never treated; without never-treated units the periods from the last
    cohort on are dropped and, with ``control="never_treated"``, that cohort
    is the comparison group.

    References
    ----------
    Callaway and Sant'Anna (2021); Sant'Anna and Zhao (2020).

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat([0, 3, 4], 40)
    >>> panel = pl.DataFrame({
    ...     "id": np.repeat(np.arange(120), 4), "t": np.tile([1, 2, 3, 4], 120),
    ...     "g": np.repeat(g, 4), "y": rng.normal(size=480)})
    >>> fit = group_time_frame(panel, outcome="y", unit="id", time="t", cohort="g")
    >>> fit.tidy().height, round(fit.aggregate("simple").std_error, 3) > 0
    (6, True)
    """
    spec = GroupTimeSpec(
        outcome=outcome, unit=unit, time=time, cohort=cohort,
        cluster=None if cluster == unit else cluster, control=control,
        covariates=tuple(covariates), method=method, base_period=base_period,
        anticipation=anticipation, alpha=alpha,
    )
    return _fit(_Panel.from_frame(data, spec), spec)


# --------------------------------------------------------------------------- panel


@dataclass(frozen=True, eq=False)
class _Panel:
    """The balanced panel as arrays: units sorted by id, periods ascending."""

    units: pl.Series
    periods: np.ndarray  # (T,)
    y: np.ndarray  # (n, T)
    x: np.ndarray  # (n, T, k), first column the intercept
    g: np.ndarray  # (n,), inf = never treated
    clusters: np.ndarray | None  # (n,) integer codes

    @classmethod
    def from_frame(cls, data: pl.DataFrame, spec: GroupTimeSpec) -> _Panel:
        cols = [spec.unit, spec.time, spec.cohort, spec.outcome, *spec.covariates]
        cols += [spec.cluster] if spec.cluster is not None else []
        missing = [c for c in dict.fromkeys(cols) if c not in data.columns]
        if missing:
            raise ValueError(f"group_time_frame: expected columns {missing}, found {data.columns}")
        frame = data.select(list(dict.fromkeys(cols))).sort(spec.unit, spec.time)
        for c in [spec.unit, spec.time, spec.outcome, *spec.covariates] + ([spec.cluster] if spec.cluster else []):
            if frame[c].null_count():
                raise ValueError(f"column {c!r}: expected no missing values, found {frame[c].null_count()}")
        units = frame[spec.unit].unique(maintain_order=True)
        periods = np.unique(frame[spec.time].to_numpy()).astype(float)
        n, T = units.len(), periods.size
        if frame.height != n * T or frame.select(pl.struct(spec.unit, spec.time).n_unique()).item() != frame.height:
            raise ValueError(
                f"panel is unbalanced: expected each of {n} units once in each of {T} periods "
                f"({n * T} rows), found {frame.height} rows; only balanced panels are supported"
            )
        per_unit = frame.group_by(spec.unit).agg(
            [pl.col(spec.cohort).fill_null(0).n_unique().alias("_g")]
            + ([pl.col(spec.cluster).n_unique().alias("_c")] if spec.cluster else [])
        )
        if per_unit["_g"].max() > 1:
            raise ValueError(f"column {spec.cohort!r}: expected one first treated period per unit, found several")
        if spec.cluster and per_unit["_c"].max() > 1:
            raise ValueError(f"column {spec.cluster!r}: expected a time-invariant cluster per unit, found several")
        y = frame[spec.outcome].cast(pl.Float64).to_numpy().reshape(n, T)
        x = np.ones((n * T, 1 + len(spec.covariates)))
        for j, c in enumerate(spec.covariates, start=1):
            x[:, j] = frame[c].cast(pl.Float64).to_numpy()
        if not (np.isfinite(y).all() and np.isfinite(x).all()):
            raise ValueError("outcome and covariates: expected finite values, found NaN or infinity")
        g = frame[spec.cohort].fill_null(0).cast(pl.Float64).to_numpy().reshape(n, T)[:, 0].copy()
        g[g == 0] = np.inf
        clusters = None
        if spec.cluster:
            clusters = np.unique(frame[spec.cluster].to_numpy().reshape(n, T)[:, 0], return_inverse=True)[1]
        return cls(units, periods, y, x.reshape(n, T, -1), g, clusters)

    def subset(self, keep_units: np.ndarray, keep_periods: np.ndarray) -> _Panel:
        clusters = None if self.clusters is None else np.unique(self.clusters[keep_units], return_inverse=True)[1]
        return _Panel(
            self.units.filter(pl.Series(keep_units)), self.periods[keep_periods],
            self.y[np.ix_(keep_units, keep_periods)], self.x[keep_units][:, keep_periods],
            self.g[keep_units], clusters,
        )


def _prepare(panel: _Panel, spec: GroupTimeSpec) -> tuple[_Panel, np.ndarray]:
    """R did's pre-processing of cohorts: returns the panel it estimates on and the cohorts it reports."""
    delta = spec.anticipation
    g = panel.g.copy()
    g[g > panel.periods.max() + delta] = np.inf  # treated after the panel ends: never treated here
    panel = _Panel(panel.units, panel.periods, panel.y, panel.x, g, panel.clusters)
    latest = None
    if not np.isinf(g).any():
        latest = g.max()
        warnings.warn(
            "no never-treated units: periods from the last cohort on are dropped"
            + (" and that cohort is the comparison group" if spec.control == "never_treated" else ""),
            stacklevel=4,
        )
        panel = panel.subset(np.ones(g.size, bool), panel.periods < latest - delta)
        if spec.control == "never_treated":
            g = panel.g.copy()
            g[g == latest] = np.inf
            panel = _Panel(panel.units, panel.periods, panel.y, panel.x, g, panel.clusters)
    first = panel.periods[0]
    early = np.isfinite(panel.g) & (panel.g <= first + delta)
    if early.any():
        warnings.warn(f"dropped {int(early.sum())} units already treated in the first period", stacklevel=4)
        panel = panel.subset(~early, np.ones(panel.periods.size, bool))
    groups = np.unique(panel.g[np.isfinite(panel.g)])
    groups = groups[groups > panel.periods[0] + delta]
    if latest is not None and spec.control == "not_yet_treated":
        groups = groups[groups < latest]
    if groups.size == 0:
        raise ValueError("cohort: expected at least one cohort first treated after the first period, found none")
    return panel, groups


# --------------------------------------------------------------------------- estimation


def _fit(panel: _Panel, spec: GroupTimeSpec) -> GroupTimeResult:
    panel, groups = _prepare(panel, spec)
    periods, n = panel.periods, panel.g.size
    delta, varying = spec.anticipation, spec.base_period == "varying"
    rows: list[tuple[float, float, float]] = []
    columns: list[np.ndarray] = []
    for g in groups:
        before = np.flatnonzero(periods + delta < g)
        base_g = int(before[-1])
        for t in range(1 if varying else 0, periods.size):
            post = g <= periods[t]
            base = t - 1 if varying and not post else base_g
            if base == t:  # universal base period: the reference cell, zero by construction
                rows.append((g, periods[t], 0.0))
                columns.append(np.zeros(n))
                continue
            att, inf = _cell(panel, spec, g, t, base)
            rows.append((g, periods[t], att))
            columns.append(inf)
    inf_matrix = np.column_stack(columns)
    return _result(panel, spec, groups, rows, inf_matrix)


def _cell(panel: _Panel, spec: GroupTimeSpec, g: float, t: int, base: int) -> tuple[float, np.ndarray]:
    """ATT(g, t) with base period ``base`` and its influence function over all n units (n/n1 scaled)."""
    n = panel.g.size
    treated = panel.g == g
    if spec.control == "never_treated":
        control = np.isinf(panel.g)
    else:
        threshold = panel.periods[max(t, base)] + spec.anticipation
        control = (panel.g > threshold) & ~treated
    keep = treated | control
    inf = np.full(n, np.nan)
    if not treated.any() or not control.any():
        warnings.warn(f"group {g:g}, period {panel.periods[t]:g}: no treated or no comparison units", stacklevel=4)
        return np.nan, inf
    dy = panel.y[keep, t] - panel.y[keep, base]
    x = panel.x[keep, min(t, base), :]
    d = treated[keep].astype(float)
    try:
        att, psi = _ESTIMATORS[spec.method](dy, d, x)
    except _CellFailed as err:
        warnings.warn(f"group {g:g}, period {panel.periods[t]:g}: {err}; its ATT is missing", stacklevel=4)
        return np.nan, inf
    inf[:] = 0.0
    inf[keep] = n / keep.sum() * psi
    return att, inf


def _result(
    panel: _Panel, spec: GroupTimeSpec, groups: np.ndarray,
    rows: list[tuple[float, float, float]], inf: np.ndarray,
) -> GroupTimeResult:
    se = _std_errors(inf, panel.clusters)
    z = _z(spec.alpha)
    group, time_, att = (np.array(c, dtype=float) for c in zip(*rows))
    dtype = pl.Int64 if np.all(np.mod(np.r_[panel.periods, groups], 1) == 0) else pl.Float64
    table = pl.DataFrame({
        "group": group, "time": time_, "estimate": att, "std_error": se,
        "ci_low": att - z * se, "ci_high": att + z * se,
    }).with_columns(pl.col("group", "time").cast(dtype)).fill_nan(None)
    return GroupTimeResult(
        table=table, influence_function=inf, units=panel.units, cohorts=panel.g,
        periods=panel.periods, groups=groups, spec=spec, clusters=panel.clusters,
    )


# --------------------------------------------------------------------------- 2x2 estimators (DRDID panel)


def _logit(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Fitted probabilities of a logit of d on x by Newton's method (the MLE to machine precision)."""
    beta = np.zeros(x.shape[1])
    p0 = min(max(d.mean(), 1e-10), 1 - 1e-10)
    beta[0] = np.log(p0 / (1 - p0)) if np.allclose(x[:, 0], 1) else 0.0
    for _ in range(100):
        eta = x @ beta
        p = special.expit(eta)
        w = p * (1 - p)
        step = np.linalg.lstsq(x * np.sqrt(w)[:, None], (d - p) / np.sqrt(np.maximum(w, 1e-300)), rcond=None)[0]
        beta = beta + step
        if np.max(np.abs(step)) < 1e-13 * (1 + np.max(np.abs(beta))):
            break
    else:
        warnings.warn("propensity score: Newton's method did not converge in 100 steps", stacklevel=7)
    return special.expit(x @ beta)


def _propensity(x: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Propensity score (capped at 1 - 1e-6), DRDID's trimming indicator and the logit's linear representation."""
    ps = _logit(x, d)
    if ps.max() >= 0.999:
        raise _CellFailed("overlap violated (a propensity score at or above 0.999)")
    ps = np.minimum(ps, 1 - 1e-6)
    trim = np.where(d == 1, ps < 1.01, ps < 0.995).astype(float)
    hess = x.T @ (x * (ps * (1 - ps))[:, None])
    try:
        hess_inv = linalg.cho_solve(linalg.cho_factor(hess), np.eye(x.shape[1])) * d.size
    except linalg.LinAlgError as err:
        raise _CellFailed("singular propensity-score information matrix") from err
    return ps, trim, ((d - ps)[:, None] * x) @ hess_inv


def _outcome_regression(dy: np.ndarray, d: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS of dy on x among the comparison units: fitted values for all, and the linear representation."""
    c = d == 0
    xc = x[c]
    gram = xc.T @ xc
    if 1 / np.linalg.cond(gram, 1) < _EPS:
        raise _CellFailed("covariate matrix of the comparison units is singular")
    beta = np.linalg.lstsq(xc, dy[c], rcond=None)[0]  # least squares on X itself: no squared condition number
    fitted = x @ beta
    xpx_inv = np.linalg.inv(gram / d.size)
    return fitted, (((1 - d) * (dy - fitted))[:, None] * x) @ xpx_inv


def _dr(dy: np.ndarray, d: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """DRDID::drdid_panel: the doubly robust estimate and its influence function."""
    fitted, lin_or = _outcome_regression(dy, d, x)
    ps, trim, lin_ps = _propensity(x, d)
    w_treat = trim * d
    w_cont = trim * ps * (1 - d) / (1 - ps)
    resid = dy - fitted
    eta_treat = np.mean(w_treat * resid) / np.mean(w_treat)
    eta_cont = np.mean(w_cont * resid) / np.mean(w_cont)
    inf_treat = (w_treat * resid - w_treat * eta_treat - lin_or @ np.mean(w_treat[:, None] * x, axis=0))
    inf_treat /= np.mean(w_treat)
    inf_cont = (
        w_cont * resid - w_cont * eta_cont
        + lin_ps @ np.mean((w_cont * (resid - eta_cont))[:, None] * x, axis=0)
        - lin_or @ np.mean(w_cont[:, None] * x, axis=0)
    ) / np.mean(w_cont)
    return float(eta_treat - eta_cont), inf_treat - inf_cont


def _reg(dy: np.ndarray, d: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """DRDID::reg_did_panel: the outcome-regression estimate and its influence function."""
    fitted, lin_or = _outcome_regression(dy, d, x)
    eta_treat = np.mean(d * dy) / np.mean(d)
    eta_cont = np.mean(d * fitted) / np.mean(d)
    inf_treat = (d * dy - d * eta_treat) / np.mean(d)
    inf_cont = (d * fitted - d * eta_cont + lin_or @ np.mean(d[:, None] * x, axis=0)) / np.mean(d)
    return float(eta_treat - eta_cont), inf_treat - inf_cont


def _ipw(dy: np.ndarray, d: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """DRDID::std_ipw_did_panel: the standardised (Hajek) IPW estimate and its influence function."""
    ps, trim, lin_ps = _propensity(x, d)
    w_treat = trim * d
    w_cont = trim * ps * (1 - d) / (1 - ps)
    eta_treat = np.mean(w_treat * dy) / np.mean(w_treat)
    eta_cont = np.mean(w_cont * dy) / np.mean(w_cont)
    inf_treat = (w_treat * dy - w_treat * eta_treat) / np.mean(w_treat)
    inf_cont = (
        w_cont * dy - w_cont * eta_cont + lin_ps @ np.mean((w_cont * (dy - eta_cont))[:, None] * x, axis=0)
    ) / np.mean(w_cont)
    return float(eta_treat - eta_cont), inf_treat - inf_cont


_ESTIMATORS = {"dr": _dr, "reg": _reg, "ipw": _ipw}


# --------------------------------------------------------------------------- aggregation (R did's aggte)


def _weight_inf(keepers: np.ndarray, pg: np.ndarray, cohort_of_cell: np.ndarray, g_units: np.ndarray) -> np.ndarray:
    """Influence function of the estimated cohort-share weights (R did's ``wif``), n x len(keepers)."""
    share = pg[keepers]
    total = share.sum()
    centred = (g_units[:, None] == cohort_of_cell[keepers][None, :]).astype(float) - share[None, :]
    return centred / total - np.outer(centred.sum(axis=1), share / total**2)


def _combine(att: np.ndarray, inf: np.ndarray, cells: np.ndarray, weights: np.ndarray,
             wif: np.ndarray | None) -> np.ndarray:
    """Influence function of sum(weights * att[cells]), plus the weights' own term when estimated."""
    if cells.size == 0:
        raise ValueError("aggregate: expected at least one group-time estimate to combine, found none")
    out = inf[:, cells] @ weights
    if wif is not None:
        out = out + wif @ att[cells]
    return out


def _aggregate(
    fit: GroupTimeResult, type_: AggregationType, *, min_e: float, max_e: float,
    balance_e: int | None, na_rm: bool,
) -> AggregateResult:
    table = fit.table
    group = table["group"].cast(pl.Float64).to_numpy()
    time_ = table["time"].cast(pl.Float64).to_numpy()
    att = table["estimate"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    inf = fit.influence_function
    groups = fit.groups
    if np.isnan(att).any():
        if not na_rm:
            raise ValueError("aggregate: found missing group-time estimates; pass na_rm=True to drop them")
        ok = ~np.isnan(att)
        group, time_, att, inf = group[ok], time_[ok], att[ok], inf[:, ok]
        groups = np.unique(group)
        if type_ == "group":
            # as R: keep the cohorts left with a post-treatment cell (max_e in periods here)
            has_post = np.array([np.any((group == gg) & (time_ >= gg) & (time_ <= gg + max_e)) for gg in groups])
            ok = np.isin(group, groups[has_post])
            group, time_, att, inf = group[ok], time_[ok], att[ok], inf[:, ok]
            groups = np.unique(group)
    # R recodes periods and cohorts to positions 1, 2, ... of their sorted union
    union = np.union1d(fit.periods, fit.groups)
    rg, rt = np.searchsorted(union, group) + 1, np.searchsorted(union, time_) + 1
    # a unit's cohort outside the union (never treated, or a dropped cohort) matches no cell
    pos = np.minimum(np.searchsorted(union, fit.cohorts), union.size - 1)
    g_units = np.where(union[pos] == fit.cohorts, pos + 1, 0)
    pg_groups = np.array([np.mean(fit.cohorts == gg) for gg in groups])
    pg = pg_groups[np.searchsorted(groups, group)]
    clusters = fit.clusters
    z = _z(fit.spec.alpha)

    def finish(estimate: float, overall_inf: np.ndarray, label: str | None, keys: np.ndarray,
               estimates: np.ndarray, parts: np.ndarray | None) -> AggregateResult:
        se = float(_std_errors(overall_inf, clusters)[0])
        if label is None:
            frame = pl.DataFrame()
        else:
            ses = _std_errors(parts, clusters)
            frame = pl.DataFrame({label: keys, "estimate": estimates, "std_error": ses,
                                  "ci_low": estimates - z * ses, "ci_high": estimates + z * ses}).fill_nan(None)
            if np.all(np.mod(keys, 1) == 0):
                frame = frame.with_columns(pl.col(label).cast(pl.Int64))
        rows_inf = np.zeros((overall_inf.shape[0], 0)) if parts is None else parts
        return AggregateResult(type_, float(estimate), se, frame, overall_inf, fit.spec.alpha, rows_inf)

    if type_ == "simple":
        keep = np.flatnonzero((rg <= rt) & (rt <= rg + max_e))
        w = pg[keep] / pg[keep].sum()
        psi = _combine(att, inf, keep, w, _weight_inf(keep, pg, rg, g_units))
        return finish(float(np.sum(att[keep] * w)), psi, None, np.array([]), np.array([]), None)

    if type_ == "group":
        rgroups = np.searchsorted(union, groups) + 1
        est, parts = [], []
        for gg in rgroups:
            cells = np.flatnonzero((rg == gg) & (gg <= rt) & (rt <= rg + max_e))
            est.append(att[cells].mean() if cells.size else np.nan)
            parts.append(_combine(att, inf, cells, pg[cells] / pg[cells].sum(), None))
        est_g, inf_g = np.array(est), np.column_stack(parts)
        idx = np.arange(groups.size)
        psi = _combine(est_g, inf_g, idx, pg_groups / pg_groups.sum(), _weight_inf(idx, pg_groups, rgroups, g_units))
        return finish(float(np.sum(est_g * pg_groups) / pg_groups.sum()), psi, "group", groups, est_g, inf_g)

    if type_ == "dynamic":
        e_cell = time_ - group
        balanced = np.ones(att.size, bool)
        eseq = np.unique(e_cell)
        if balance_e is not None:
            last = time_.max()
            balanced = last - group >= balance_e
            eseq = np.unique(e_cell[balanced])
            eseq = eseq[(eseq <= balance_e) & (eseq >= balance_e - last + union[0])]
        eseq = eseq[(eseq >= min_e) & (eseq <= max_e)]
        if eseq.size == 0:
            raise ValueError(f"aggregate: expected event times within [{min_e}, {max_e}], found none")
        est, parts = [], []
        for e in eseq:
            cells = np.flatnonzero((e_cell == e) & balanced)
            w = pg[cells] / pg[cells].sum()
            est.append(np.sum(att[cells] * w))
            parts.append(_combine(att, inf, cells, w, _weight_inf(cells, pg, rg, g_units)))
        est_e, inf_e = np.array(est), np.column_stack(parts)
        pos = np.flatnonzero(eseq >= 0)
        psi = inf_e[:, pos] @ np.full(pos.size, 1 / pos.size) if pos.size else np.full(inf.shape[0], np.nan)
        overall = est_e[pos].mean() if pos.size else np.nan
        return finish(float(overall), psi, "event_time", eseq, est_e, inf_e)

    # calendar
    periods = np.unique(rt)
    periods = periods[periods >= rg.min()]
    periods = periods[[bool(np.any((rt == p) & (rg <= rt))) for p in periods]]
    if periods.size == 0:
        raise ValueError("aggregate: expected a period with a post-treatment estimate, found none")
    est, parts = [], []
    for p in periods:
        cells = np.flatnonzero((rt == p) & (rg <= rt))
        w = pg[cells] / pg[cells].sum()
        est.append(np.sum(att[cells] * w))
        parts.append(_combine(att, inf, cells, w, _weight_inf(cells, pg, rg, g_units)))
    est_t, inf_t = np.array(est), np.column_stack(parts)
    psi = inf_t @ np.full(periods.size, 1 / periods.size)
    return finish(float(est_t.mean()), psi, "time", union[periods - 1], est_t, inf_t)
