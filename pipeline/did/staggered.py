r"""Callaway-Sant'Anna group-time ATTs on a :class:`~pipeline.did.data.Panel`: ``group_time`` and its inference.

The numerics live in :mod:`pipeline.did.group_time` (R ``did`` 2.5.1 to 1e-6);
this module gives them the :class:`~pipeline.did.fit.Fit` protocol. A unit's
cohort is its first period with treatment 1 (never treated: no such period);
periods are their ranks internally (as in ``Panel.event_time``) and labelled
with the panel's own values in ``tidy()``, so any sortable time column works.

Inference is on the influence function :math:`\psi` of an aggregate
:math:`\hat\theta` (R ``did``'s scale: :math:`\hat\theta - \theta \approx
\frac1n\sum_i\psi_i`), summed within the panel's clusters,
:math:`S_c = \sum_{i\in c}\psi_i`; the analytic standard error is
:math:`\sqrt{\sum_c S_c^2}/n` (R's cluster form, no small-sample factor), and
intervals are normal, as R's.

*Unrestricted wild bootstrap* (R's ``mboot`` with Webb or Rademacher weights
:math:`v_c` instead of Mammen's): :math:`\theta^* - \hat\theta = \frac1n\sum_c
v_c S_c`, studentised by the draw's own :math:`\sqrt{\sum_c v_c^2 S_c^2}/n`;
the p-value is the share of :math:`|t^*|` at least :math:`|t|`, the interval
percentile-t, :math:`\hat\theta \pm q_{1-\alpha}(|t^*|)\,\mathrm{se}`.

*Restricted (score) wild bootstrap*: see :meth:`StaggeredFit.wild_bootstrap`.

*Randomization*: the clusters' cohorts are reassigned among clusters, keeping
the number of clusters of each cohort; see :meth:`StaggeredFit.randomization_test`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, get_args

import numpy as np
import polars as pl
from scipy import special

from pipeline.did.data import Panel
from pipeline.did.fit import Fit, InferenceResult, check_draws, check_panel, check_weights
from pipeline.did.group_time import (
    AggregateResult,
    AggregationType,
    BasePeriod,
    Control,
    GroupTimeResult,
    Method,
    _fit,
    _Panel,
    group_time_frame,
)
from pipeline.did.inference.bootstrap import _invert, all_sign_vectors, weight_chunks
from pipeline.did.inference.randomization import enumerate_assignments, make_design, sample_assignments

__all__ = ["AggregateFit", "GroupTimeFit", "StaggeredFit", "group_time"]

_PERIOD, _COHORT = "_period", "_cohort"
_RTOL = 1e-10  # |t*| >= |t| up to rounding: the observed draw or assignment counts as extreme


class StaggeredFit(Fit):
    """What :class:`GroupTimeFit` and :class:`AggregateFit` share: the group-time fit and inference on an aggregate.

    Every inference method concerns the fit's headline aggregate (the overall
    ``"att"``: for :class:`GroupTimeFit` the ``"simple"`` aggregate, for an
    :class:`AggregateFit` its own); the unrestricted wild bootstrap also gives
    a pointwise ``table`` for every term of ``tidy()``.
    """

    estimator = "group_time"
    inference = ("wild_bootstrap", "randomization_test")

    def __init__(self, panel: Panel, outcome: str, gt: GroupTimeResult, frame: pl.DataFrame, labels: np.ndarray,
                 aggregation: tuple[AggregationType, dict[str, Any]], alpha: float) -> None:
        super().__init__(outcome=outcome, result=gt, path="general", fallback_reason=None, alpha=alpha)
        self.panel, self._frame, self._labels, self._aggregation = panel, frame, labels, aggregation
        n = gt.n_units
        self._clusters = gt.clusters if gt.clusters is not None else np.arange(n)
        self._n_clusters = int(self._clusters.max()) + 1

    # ------------------------------------------------------------ terms
    def _terms(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Terms, estimates, analytic standard errors and influence functions (n x terms)."""
        raise NotImplementedError

    def _label(self, rank: float) -> str:
        return str(self._labels[int(rank) - 1])

    def _headline(self, gt: GroupTimeResult) -> AggregateResult:
        kind, options = self._aggregation
        return gt.aggregate(kind, **options)

    def _rows(self) -> list[dict[str, Any]]:
        gt = self.result
        terms, est, se, _ = self._terms()
        z = float(-special.ndtri(self.alpha / 2))
        treated = np.isfinite(gt.cohorts)
        common = {"df": None, "n_obs": gt.n_units * gt.periods.size, "n_units": gt.n_units,
                  "n_clusters": self._n_clusters,
                  "n_treated_clusters": int(np.unique(self._clusters[treated]).size), "path": "general"}
        rows = []
        for term, b, s in zip(terms, est, se):
            t = b / s if np.isfinite(s) and s > 0 else np.nan
            rows.append({"term": term, "estimate": float(b), "std_error": float(s), "statistic": float(t),
                         "p_value": float(2 * special.ndtr(-abs(t))), "ci_low": float(b - z * s),
                         "ci_high": float(b + z * s), **common})
        return rows

    def _cluster_sums(self, psi: np.ndarray) -> np.ndarray:
        psi = psi.reshape(psi.shape[0], -1)
        out = np.zeros((self._n_clusters, psi.shape[1]))
        np.add.at(out, self._clusters, psi)
        return out

    def _weights(self, weights: str, draws: int, seed: int) -> tuple[np.ndarray, bool]:
        G = self._n_clusters
        if weights == "rademacher" and G < 31 and 2**G <= draws:
            return all_sign_vectors(G), True
        return np.concatenate(list(weight_chunks(weights, G, int(draws), seed))), False

    # ------------------------------------------------------------ wild bootstrap
    def wild_bootstrap(self, *, restricted: bool = True, weights: str = "webb", draws: int = 9_999, seed: int = 0,
                       null: float = 0.0) -> InferenceResult:
        r"""Wild cluster bootstrap of H0: att = null on the influence function, clusters as the panel's.

        Rademacher weights enumerate all :math:`2^G` sign vectors when
        :math:`2^G \le` ``draws``; otherwise ``draws`` seeded draws (Webb's
        six-point weights by default).

        ``restricted=False``: the multiplier bootstrap of R ``did`` (``mboot``),
        bootstrap-t: :math:`t^*_b = \sum_c v_{bc}S_c / \sqrt{\sum_c v_{bc}^2 S_c^2}`
        against :math:`t = (\hat\theta - \text{null})/\mathrm{se}`, percentile-t
        interval. ``table`` has, for every term of ``tidy()`` (first the
        headline ``"att"``), the analytic and the bootstrap standard error (the
        standard deviation of :math:`\theta^*_b`), the pointwise p-value (of
        ``null`` for the headline, of no effect for the other terms) and the
        pointwise percentile-t interval, all from the same draws.

        ``restricted=True``: a score bootstrap with the null imposed (Kline and
        Santos 2012). What is imposed: the influence function is recentred
        under :math:`H_0:\theta = \theta_0` on the treated side,

        .. math::

            \tilde\psi_i = \psi_i + (\hat\theta - \theta_0)\,h_i,\qquad
            h_i = n\,\omega_{g(i)} / n_{g(i)},

        with :math:`n_g` the units of cohort g and :math:`\omega_g` the total
        weight the aggregate puts on cohort g's cells
        (:math:`\hat\theta = \sum_k w_k \widehat{ATT}_k`, :math:`\omega_g =
        \sum_{k: g_k = g} w_k`, :math:`\sum_g\omega_g = 1`). In every cell the
        treated part of the influence function is :math:`n\,1\{G_i = g\}/n_g`
        times the unit's deviation from its cohort's mean change, so
        :math:`\tilde\psi` is the influence function with each cohort's mean
        moved from what is estimated to what :math:`H_0` says (the comparison
        side, which carries no effect, is untouched); :math:`\frac1n\sum_i
        \tilde\psi_i = \hat\theta - \theta_0`. With :math:`\tilde S_c` its
        cluster sums, the statistic is the score t
        :math:`T = \sum_c\tilde S_c / \sqrt{\sum_c \tilde S_c^2}` and the draws
        :math:`T^*_b = \sum_c v_{bc}\tilde S_c / \sqrt{\sum_c v_{bc}^2\tilde S_c^2}`;
        p is the share of :math:`|T^*_b| \ge |T|`.

        Why it is valid: under :math:`H_0` the :math:`\tilde S_c` are, to first
        order, independent mean-zero cluster sums (the influence function at the
        null), so multiplying them by independent mean-zero unit-variance
        weights reproduces the null distribution of T as G grows; with
        Rademacher weights it is a sign-change test, exact when the
        :math:`\tilde S_c` are symmetric about zero. Nothing is estimated under
        the alternative, so the spread of the draws does not borrow the
        estimation error of :math:`\hat\theta` (the point of WCR). With few
        treated clusters the restricted test is conservative and its interval,
        by test inversion on the same draws, can be unbounded: as
        :math:`|\theta_0|\to\infty` the p-value tends to the probability that
        the weights of the treated clusters all carry one sign
        (:math:`2^{1-G_1}` for Rademacher with :math:`G_1` treated clusters).
        """
        check_weights(weights)
        check_draws(draws)
        W, exact = self._weights(weights, draws, seed)
        agg = self._headline(self.result)
        n = self.result.n_units
        theta, psi = agg.estimate, agg.influence_function
        se = float(np.sqrt(np.sum(self._cluster_sums(psi) ** 2)) / n)
        kind = "restricted" if restricted else "unrestricted"
        if not restricted:
            p, lo, hi, table = self._unrestricted(W, null)
            stat = (theta - null) / se
        else:
            table = None
            S = self._cluster_sums(psi)[:, 0]
            H = self._cluster_sums(self._null_direction(self.result))[:, 0]
            WS, WH = W @ S, W @ H
            W2 = W * W
            QSS, QSH, QHH = W2 @ (S * S), W2 @ (S * H), W2 @ (H * H)

            def score_t(beta0: float) -> tuple[float, np.ndarray]:
                d = theta - beta0
                tilde = S + d * H
                obs = np.sum(tilde) / np.sqrt(np.sum(tilde**2))
                with np.errstate(divide="ignore", invalid="ignore"):
                    star = (WS + d * WH) / np.sqrt(np.maximum(QSS + 2 * d * QSH + d * d * QHH, 0.0))
                return float(obs), star

            def p_at(beta0: float) -> float:
                obs, star = score_t(beta0)
                return float(np.mean(np.abs(star) >= abs(obs) * (1 - _RTOL)))

            stat = score_t(null)[0]
            p = p_at(null)
            lo, hi = _invert(p_at, theta, se, self.alpha, rtol=1e-6)
        return InferenceResult(f"wild_bootstrap_{kind}_{weights}", float(stat), float(p), float(lo), float(hi),
                               int(W.shape[0]), exact, table)

    def _unrestricted(self, W: np.ndarray, null: float) -> tuple[float, float, float, pl.DataFrame]:
        """Headline p-value and interval, and the pointwise table over the terms (same draws)."""
        terms, est, se, psi = self._terms()
        n = self.result.n_units
        S = self._cluster_sums(psi)  # (G, k)
        dev = W @ S  # n (theta* - theta), (B, k)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_star = np.abs(dev / np.sqrt((W * W) @ (S * S)))
            signed = (est - np.where(np.arange(len(terms)) == 0, null, 0.0)) / se
            t_obs = np.abs(signed)
        ok = np.isfinite(se) & (se > 0)
        p = np.where(ok, np.mean(t_star >= t_obs * (1 - _RTOL), axis=0), np.nan)
        q = np.where(ok, np.quantile(np.where(ok, t_star, 0.0), 1 - self.alpha, axis=0), np.nan)
        table = pl.DataFrame({"term": terms, "estimate": est, "std_error": se,
                              "bootstrap_std_error": dev.std(axis=0) / n, "statistic": signed,
                              "p_value": p, "ci_low": est - q * se, "ci_high": est + q * se}).fill_nan(None)
        if not ok[0]:
            raise ValueError("wild_bootstrap: the aggregate's standard error is zero or missing")
        return float(p[0]), float(est[0] - q[0] * se[0]), float(est[0] + q[0] * se[0]), table

    def _null_direction(self, gt: GroupTimeResult) -> np.ndarray:
        """h_i = n omega_g(i) / n_g(i): the treated units' share of the headline aggregate (mean 1)."""
        table = gt.table
        zero = table.with_columns(pl.lit(0.0).alias("estimate"))
        w = np.empty(table.height)
        for k in range(table.height):
            unit = zero.with_columns(pl.when(pl.int_range(pl.len()) == k).then(1.0).otherwise(0.0)
                                     .alias("estimate"))
            w[k] = self._headline(replace(gt, table=unit)).estimate
        groups = table["group"].cast(pl.Float64).to_numpy()
        h = np.zeros(gt.n_units)
        for g in np.unique(groups):
            members = gt.cohorts == g
            if members.any():
                h[members] = gt.n_units * w[groups == g].sum() / members.sum()
        if not np.isclose(h.mean(), 1.0, atol=1e-8):
            raise ValueError(f"wild_bootstrap: the aggregate's cohort weights sum to {h.mean():.6g}, expected 1")
        return h

    # ------------------------------------------------------------ randomization
    def randomization_test(self, assignments: Any = "design", *, draws: int | None = None, seed: int = 0,
                           null: float = 0.0, max_assignments: int | None = None) -> InferenceResult:
        r"""Randomization test of a constant effect = null: the clusters' cohorts reassigned among clusters.

        An assignment gives each treated cluster's cohort (its treatment path up
        to the first treated period; a path that ends, such as a one-year pilot,
        has the same cohort as one that does not) to a distinct cluster, the
        number of clusters of each cohort kept, the rest never treated. Under
        :math:`H_0` of a constant effect :math:`\beta_0` on every treated
        unit-period, :math:`Y(0) = Y - \beta_0 D` is known; the statistic of
        assignment a is :math:`|t_a|`, the headline aggregate of
        :math:`Y - \beta_0 D` fitted with a's cohorts over its analytic
        cluster-robust standard error (:math:`|\hat\theta_a|` with one treated
        cluster). Estimate and influence function are linear in the outcome,
        so each assignment is fitted twice (on Y and on D) and five numbers
        give :math:`t_a(\beta_0)` for every :math:`\beta_0`: the interval
        inverts the test on the same assignments.

        All assignments (the observed one among them) when there are at most
        ``max_assignments`` (default 2,000), p = #{|t_a| >= |t_obs|} / #;
        otherwise ``draws`` (default 999) seeded assignments plus the observed
        one. ``assignments`` may instead be an (R, G, T) array of cluster x
        period treatments (clusters and periods sorted): p over those R.
        """
        check_draws(draws)
        check_draws(max_assignments, name="max_assignments")
        engine = _RandomizationEngine(self)
        if isinstance(assignments, str):
            if assignments != "design":
                raise ValueError(f"assignments: expected 'design' or an (R, G, T) array, found {assignments!r}")
            coef, obs, total, exact = engine.design(max_assignments=2_000 if max_assignments is None
                                                    else max_assignments, draws=999 if draws is None else draws,
                                                    seed=seed)
        else:
            coef, obs = engine.explicit(assignments)
            total, exact = coef.shape[1], True
        if not exact:
            coef = np.concatenate([obs, coef], axis=1)

        def p_at(beta0: float) -> float:
            t_obs = abs(engine.t_at(obs, beta0)[0])
            return float(np.mean(np.abs(engine.t_at(coef, beta0)) >= t_obs * (1 - _RTOL)))

        agg = self._headline(self.result)
        se = float(np.sqrt(np.sum(self._cluster_sums(agg.influence_function) ** 2)) / self.result.n_units)
        lo, hi = _invert(p_at, agg.estimate, se, self.alpha, rtol=1e-6)
        name = "randomization_t" if engine.studentised else "randomization_estimate"
        return InferenceResult(name, float(engine.t_at(obs, null)[0]), p_at(null), float(lo), float(hi),
                               int(coef.shape[1]), exact)


class _RandomizationEngine:
    """Refits of the group-time estimator under reassigned cohorts: five numbers per assignment."""

    def __init__(self, fit: StaggeredFit) -> None:
        gt = fit.result
        self.fit, self.gt = fit, gt
        kept = fit._frame.filter(pl.col(fit.panel.unit).is_in(gt.units.implode()))
        base = _Panel.from_frame(kept, gt.spec)
        treat = kept.sort(fit.panel.unit, _PERIOD)[fit.panel.treatment].cast(pl.Float64).to_numpy()
        self.y, self.d = base, replace(base, y=treat.reshape(base.y.shape))
        clusters, G = fit._clusters, fit._n_clusters
        cohort = np.full(G, np.nan)
        for c in range(G):
            values = np.unique(gt.cohorts[clusters == c])
            if values.size != 1:
                raise ValueError(f"randomization_test: expected one cohort per cluster, found cluster "
                                 f"{c} with cohorts {values.tolist()} (reassigning clusters needs one)")
            cohort[c] = values[0]
        self.cohort, self.G = cohort, G
        self.studentised = int(np.isfinite(cohort).sum()) > 1
        self.c = 1.0 / gt.n_units**2
        # without covariates the three 2x2 estimators and their influence functions coincide; "reg" is the cheapest
        self.spec = replace(gt.spec, method="reg") if not gt.spec.covariates else gt.spec

    def coefficients(self, cohorts: Iterable[np.ndarray]) -> np.ndarray:
        """(5, A): estimate on Y, on D, and the sums of squares and cross products of their cluster sums."""
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for cl in cohorts:
                g = cl[self.fit._clusters]
                ay = self.fit._headline(_fit(replace(self.y, g=g), self.spec))
                ad = self.fit._headline(_fit(replace(self.d, g=g), self.spec))
                sy = self.fit._cluster_sums(ay.influence_function)[:, 0]
                sd = self.fit._cluster_sums(ad.influence_function)[:, 0]
                out.append([ay.estimate, ad.estimate, sy @ sy, sy @ sd, sd @ sd])
        return np.array(out, dtype=float).T.reshape(5, -1)

    def t_at(self, coef: np.ndarray, beta0: float) -> np.ndarray:
        """t_a(beta0) = (num_Y - beta0 num_D) / sqrt(c (ss_YY - 2 beta0 ss_YD + beta0^2 ss_DD))."""
        num = coef[0] - beta0 * coef[1]
        if not self.studentised:
            return num
        ss = np.maximum(coef[2] - 2 * beta0 * coef[3] + beta0 * beta0 * coef[4], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return num / np.sqrt(self.c * ss)

    def design(self, *, max_assignments: int, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """Coefficients of all (or ``draws`` sampled) assignments, of the observed one, their number, exactness."""
        treated = np.flatnonzero(np.isfinite(self.cohort))
        periods = self.gt.periods
        paths = [(periods >= self.cohort[c]).astype(float) for c in treated]
        design = make_design(paths, periods.size)
        path_cohort = np.array([periods[int(np.argmax(p))] for p in design.paths])
        slot = path_cohort[design.slot_path]
        total = design.n_assignments(self.G)
        exact = total <= max_assignments
        chunks = enumerate_assignments(self.G, design) if exact else sample_assignments(self.G, design, draws, seed)

        def cohorts() -> Iterable[np.ndarray]:
            for idx in chunks:
                for row in idx:
                    cl = np.full(self.G, np.inf)
                    cl[row] = slot
                    yield cl

        coef = self.coefficients(cohorts())
        obs = self.coefficients([np.where(np.isfinite(self.cohort), self.cohort, np.inf)])
        return coef, obs, total if exact else draws + 1, exact

    def explicit(self, assignments: Any) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients of explicit (R, G, T) cluster x period treatments, and of the observed cohorts."""
        a = np.asarray(assignments, dtype=float)
        periods = self.gt.periods
        if a.ndim != 3 or a.shape[1:] != (self.G, periods.size):
            raise ValueError(f"assignments: expected shape (R, {self.G}, {periods.size}), found {a.shape}")
        started = a != 0
        cohorts = np.where(started.any(axis=2), periods[np.argmax(started, axis=2)], np.inf)
        obs = self.coefficients([np.where(np.isfinite(self.cohort), self.cohort, np.inf)])
        return self.coefficients(list(cohorts)), obs


class GroupTimeFit(StaggeredFit):
    r"""Group-time ATTs: one term ``att(g,t)`` per cohort g and period t; inference on the simple aggregate."""

    estimator = "group_time"

    def __init__(self, panel: Panel, outcome: str, gt: GroupTimeResult, frame: pl.DataFrame, labels: np.ndarray,
                 alpha: float) -> None:
        super().__init__(panel, outcome, gt, frame, labels, ("simple", {}), alpha)

    def _terms(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        t = self.result.table
        agg = self._headline(self.result)
        n = self.result.n_units
        terms = ["att"] + [f"att({self._label(g)},{self._label(s)})" for g, s in t.select("group", "time").iter_rows()]
        est = np.r_[agg.estimate, t["estimate"].cast(pl.Float64).fill_null(np.nan).to_numpy()]
        psi = np.column_stack([agg.influence_function, self.result.influence_function])
        se = np.sqrt(np.sum(self._cluster_sums(psi) ** 2, axis=0)) / n
        se[se <= np.sqrt(np.finfo(float).eps) * 10] = np.nan
        return terms, est, se, psi

    def _rows(self) -> list[dict[str, Any]]:
        return super()._rows()[1:]  # the headline "att" is aggregate("simple")'s, not a row of this fit

    def aggregate(self, type: AggregationType = "simple", **options: Any) -> AggregateFit:  # noqa: A002
        """The summary of the group-time effects as a Fit (R ``did``'s ``aggte``; options as
        :meth:`~pipeline.did.group_time.GroupTimeResult.aggregate`): terms ``"att"`` then ``"e=-2"``,
        ``"g=2004"`` or ``"t=2006"``."""
        if type not in get_args(AggregationType):
            raise ValueError(f"type: expected one of {get_args(AggregationType)}, found {type!r}")
        self.result.aggregate(type, **options)  # validates the options once, here
        return AggregateFit(self.panel, self.outcome, self.result, self._frame, self._labels, (type, options),
                            self.alpha)


class AggregateFit(StaggeredFit):
    """An aggregate of the group-time effects: ``"att"`` (overall) and a term per event time, cohort or period."""

    def __init__(self, panel: Panel, outcome: str, gt: GroupTimeResult, frame: pl.DataFrame, labels: np.ndarray,
                 aggregation: tuple[AggregationType, dict[str, Any]], alpha: float) -> None:
        super().__init__(panel, outcome, gt, frame, labels, aggregation, alpha)
        self.estimator = f"group_time_{aggregation[0]}"  # type: ignore[misc]
        self.aggregation = self._headline(gt)

    def _terms(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        agg = self.aggregation
        t = agg.table
        key = {"dynamic": "event_time", "group": "group", "calendar": "time"}.get(agg.type)
        terms = ["att"]
        if key is not None:
            prefix = {"event_time": "e", "group": "g", "time": "t"}[key]
            keys = t[key].to_list()
            terms += [f"{prefix}={int(k)}" if key == "event_time" else f"{prefix}={self._label(k)}" for k in keys]
            est = np.r_[agg.estimate, t["estimate"].cast(pl.Float64).fill_null(np.nan).to_numpy()]
            se = np.r_[agg.std_error, t["std_error"].cast(pl.Float64).fill_null(np.nan).to_numpy()]
            psi = np.column_stack([agg.influence_function, agg.table_influence])
        else:
            est, se, psi = np.array([agg.estimate]), np.array([agg.std_error]), agg.influence_function[:, None]
        return terms, est, se, psi

    def event_table(self) -> pl.DataFrame:
        """The aggregate's own table (event_time, group or time; estimate, std_error, ci_low, ci_high)."""
        return self.aggregation.table


def group_time(panel: Panel, outcome: str, *, control: Control = "never_treated", covariates: Sequence[str] = (),
               method: Method = "dr", base_period: BasePeriod = "varying", anticipation: int = 0,
               alpha: float = 0.05) -> GroupTimeFit:
    r"""Callaway and Sant'Anna (2021) group-time ATTs of ``outcome`` on a balanced panel.

    .. math::

        ATT(g,t) = E[Y_t - Y_{b} \mid G = g] - E[Y_t - Y_{b} \mid C = 1]

    for each cohort g (units whose first treated period is g) and period t, with
    b the base period and C the comparison units (``control``: never treated,
    or also not yet treated); with ``covariates`` the comparison is doubly
    robust (``method="dr"``), by outcome regression (``"reg"``) or by inverse
    probability weighting (``"ipw"``). See
    :func:`~pipeline.did.group_time.group_time_frame` (R ``did`` 2.5.1 to 1e-6).
    Standard errors are R's analytic ones from the influence function, summed
    within the panel's clusters (the unit by default).

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> from pipeline.did import Panel
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat([0, 3, 4], 20)
    >>> t = np.tile(np.arange(1, 5), 60)
    >>> df = pl.DataFrame({"i": np.repeat(np.arange(60), 4), "t": t, "y": rng.normal(size=240),
    ...                    "d": ((np.repeat(g, 4) > 0) & (t >= np.repeat(g, 4))).astype(int)})
    >>> fit = group_time(Panel(df, unit="i", time="t", treatment="d"), "y")
    >>> fit.tidy()["term"].to_list()[:2], fit.aggregate("dynamic").tidy()["term"].to_list()[:2]
    (['att(3,2)', 'att(3,3)'], ['att', 'e=-2'])
    """
    p = check_panel(panel, "group_time")
    d = p.require_treatment("group_time")
    for name, value, alias in (("control", control, Control), ("method", method, Method),
                               ("base_period", base_period, BasePeriod)):
        if value not in get_args(alias):
            raise ValueError(f"group_time: {name}: expected one of {get_args(alias)}, found {value!r}")
    covariates = tuple(covariates)
    missing = [c for c in (outcome, *covariates) if c not in p.frame.columns]
    if missing:
        raise ValueError(f"group_time: expected columns {missing} in the panel, found none of them")
    frame, labels = _staggered_frame(p, d, outcome, covariates)
    if control == "never_treated" and frame[_COHORT].null_count() == 0:
        raise ValueError("group_time: control='never_treated' needs never-treated units, found none")
    try:
        gt = group_time_frame(frame, outcome=outcome, unit=p.unit, time=_PERIOD, cohort=_COHORT,
                              cluster=None if p.cluster == p.unit else p.cluster, control=control,
                              covariates=covariates, method=method, base_period=base_period,
                              anticipation=anticipation, alpha=alpha)
    except ValueError as exc:
        raise ValueError(f"group_time: {exc}") from None
    return GroupTimeFit(p, outcome, gt, frame, labels, alpha)


def _staggered_frame(p: Panel, d: str, outcome: str, covariates: tuple[str, ...]) -> tuple[pl.DataFrame, np.ndarray]:
    """The panel with periods as ranks 1..T and each unit's cohort (rank of its first treated period; null: never)."""
    labels = p.frame[p.time].unique().sort().to_numpy()
    frame = p.frame.with_columns(pl.col(p.time).rank("dense").cast(pl.Int64).alias(_PERIOD))
    first = (frame.filter(pl.col(d).cast(pl.Float64) != 0).group_by(p.unit)
             .agg(pl.col(_PERIOD).min().alias(_COHORT)))
    keep = list(dict.fromkeys([p.unit, _PERIOD, outcome, *covariates, p.cluster, d]))
    return frame.select(keep).join(first, on=p.unit, how="left"), labels
