"""Results of the estimators, and the one small-sample convention they share.

Every covariance in :mod:`pipeline.did` is scaled by :func:`small_sample_factor`
and every test and interval uses the t distribution with G - 1 degrees of
freedom (:func:`t_inference`); both paths (aggregated and general) call these two
functions and nothing else, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
from scipy import special

Path = Literal["aggregated", "general"]
"""Which computation produced a result: the cluster x period sums, or linearmodels."""

PathOption = Literal["auto", "aggregated", "general"]
"""The ``path`` argument of the estimators."""

PATH_OPTIONS: tuple[str, ...] = ("auto", "aggregated", "general")


def small_sample_factor(*, n_obs: int, n_params: int, n_clusters: int) -> float:
    r"""The CRV1 small-sample factor, identical to pyfixest 0.60's default ``ssc()``.

    .. math::

        c = \frac{G}{G-1}\,\frac{N-1}{N-K}

    ``n_params`` is K: the regressors plus the fixed-effect levels that pyfixest
    counts with ``k_fixef="nonnested"``. For ``y ~ x | unit + time`` with units
    nested in the clusters that is K = k + T (all T time levels: pyfixest counts
    U + T - 1 levels, removes the U nested unit levels and adds one back for the
    fully nested effect); see :func:`count_params`.
    """
    G, N, K = n_clusters, n_obs, n_params
    if G < 2 or N <= K:
        raise ValueError(f"small-sample factor: expected G >= 2 and N > K, found G={G}, N={N}, K={K}")
    return G / (G - 1) * (N - 1) / (N - K)


def count_params(*, n_regressors: int, n_units: int, n_periods: int, units_nested: bool) -> int:
    """K of :func:`small_sample_factor` for unit + time effects, as pyfixest counts it.

    Time effects are never nested in the clusters (every cluster spans all
    periods). pyfixest counts ``U + T - 1`` fixed-effect levels; when the unit
    effect is nested in the clusters it subtracts its U levels and adds 1.
    """
    k_fe = n_units + n_periods - 1
    if units_nested:
        k_fe = k_fe - n_units + 1
    return n_regressors + k_fe


@dataclass(frozen=True)
class Inference:
    """t(G-1) statistics of one coefficient."""

    t_stat: float
    p_value: float
    ci_low: float
    ci_high: float


def t_inference(estimate: float, std_error: float, df: int, alpha: float) -> Inference:
    """t statistic, two-sided p-value and 1 - alpha interval from t(df).

    The functions behind ``scipy.stats.t.sf`` and ``.ppf`` are called directly:
    the same numbers without the distribution object's argument handling, which
    costs a hundred times more than the function itself.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        t = estimate / std_error
    p = float(2 * special.stdtr(df, -abs(t))) if np.isfinite(t) else float("nan")
    q = float(special.stdtrit(df, 1 - alpha / 2))
    return Inference(float(t), p, float(estimate - q * std_error), float(estimate + q * std_error))


def jackknife_se(leave_outs: np.ndarray) -> np.ndarray:
    r"""Cluster-jackknife (CV3J) standard errors from leave-one-cluster-out estimates.

    .. math::

        \mathrm{se} = \sqrt{\tfrac{G-1}{G}\sum_g (\hat\beta_{(-g)} - \bar\beta)^2},
        \qquad \bar\beta = \tfrac1G \sum_g \hat\beta_{(-g)}

    Centred on the mean of the leave-one-out estimates (the "CV3J" of MacKinnon,
    Nielsen and Webb 2023, the classical jackknife), not on the full-sample
    estimate; the difference is of order 1/G. ``leave_outs`` is (G, K); NaN
    (an estimate not identified without some cluster) gives NaN.
    """
    b = np.atleast_2d(np.asarray(leave_outs, dtype=float))
    if b.shape[0] == 1 and np.ndim(leave_outs) == 1:
        b = b.T
    G = b.shape[0]
    dev = b - b.mean(axis=0)
    return np.sqrt((G - 1) / G * (dev**2).sum(axis=0))


_TIDY_COLUMNS = (
    "estimate",
    "std_error",
    "t_stat",
    "p_value",
    "ci_low",
    "ci_high",
    "std_error_cv3",
    "p_value_cv3",
    "df",
    "n_obs",
    "n_units",
    "n_clusters",
    "n_treated_clusters",
    "path",
    "fallback_reason",
)


@dataclass(frozen=True)
class TwfeResult:
    """Two-way fixed-effects DiD: one coefficient with CRV1 and CV3 inference."""

    estimate: float
    std_error: float
    t_stat: float
    p_value: float
    ci_low: float
    ci_high: float
    std_error_cv3: float
    p_value_cv3: float
    n_obs: int
    n_units: int
    n_clusters: int
    n_treated_clusters: int
    path: Path
    fallback_reason: str | None = None
    alpha: float = 0.05
    ssc: float = float("nan")

    @property
    def df(self) -> int:
        """Degrees of freedom of the t tests and intervals, G - 1."""
        return self.n_clusters - 1

    def tidy(self) -> pl.DataFrame:
        """One row with the estimate, its inference and the sample sizes."""
        return pl.DataFrame([{c: getattr(self, c) for c in _TIDY_COLUMNS}], schema=_tidy_schema())


def _tidy_schema(extra: dict[str, pl.DataType] | None = None) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = dict(extra or {})
    for c in _TIDY_COLUMNS:
        if c in ("df", "n_obs", "n_units", "n_clusters", "n_treated_clusters"):
            schema[c] = pl.Int64()
        elif c in ("path", "fallback_reason"):
            schema[c] = pl.String()
        else:
            schema[c] = pl.Float64()
    return schema


@dataclass(frozen=True)
class WaldTest:
    """Joint Wald test of linear restrictions, F = W / L referred to F(L, G - 1)."""

    statistic: float
    df_num: int
    df_denom: int
    p_value: float
    wald: float
    restrictions: tuple[int, ...] = ()


@dataclass(frozen=True)
class EventStudyResult:
    """Event-study coefficients (one per event time except the reference) with CRV1 and CV3 inference."""

    event_times: np.ndarray
    estimate: np.ndarray
    std_error: np.ndarray
    t_stat: np.ndarray
    p_value: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    std_error_cv3: np.ndarray
    p_value_cv3: np.ndarray
    vcov: np.ndarray
    n_obs: int
    n_units: int
    n_clusters: int
    n_treated_clusters: int
    path: Path
    reference: int = -1
    fallback_reason: str | None = None
    alpha: float = 0.05
    ssc: float = float("nan")
    _extra: dict = field(default_factory=dict, repr=False)

    @property
    def df(self) -> int:
        """Degrees of freedom of the t and F tests, G - 1."""
        return self.n_clusters - 1

    def pretrend_test(self) -> WaldTest:
        r"""Joint test that all leads (event times before ``reference``) are zero.

        .. math::

            W = \hat\beta_L' V_L^{-1} \hat\beta_L,\qquad F = W / L \sim F(L, G-1)

        with :math:`V_L` the CRV1 covariance of the L leads. With few treated
        clusters this test over-rejects (V_L rests on the treated clusters'
        scores; a lead seen in one cluster only has a degenerate variance): bin
        the far leads, and prefer the wild bootstrap or randomization inference.
        """
        lead = np.flatnonzero(self.event_times < self.reference)
        if lead.size == 0:
            raise ValueError(f"pretrend_test: no event times below the reference {self.reference}")
        b = self.estimate[lead]
        V = self.vcov[np.ix_(lead, lead)]
        W = float(b @ np.linalg.solve(V, b))
        L = int(lead.size)
        F = W / L
        p = float(special.fdtrc(L, self.df, F))
        return WaldTest(F, L, self.df, p, W, tuple(int(e) for e in self.event_times[lead]))

    def tidy(self) -> pl.DataFrame:
        """One row per event time with its estimate, inference and the sample sizes."""
        k = len(self.event_times)
        rows = {"event_time": [int(e) for e in self.event_times]}
        for c in _TIDY_COLUMNS:
            v = getattr(self, c)
            rows[c] = [float(x) for x in v] if isinstance(v, np.ndarray) else [v] * k
        return pl.DataFrame(rows, schema=_tidy_schema({"event_time": pl.Int64()}))
