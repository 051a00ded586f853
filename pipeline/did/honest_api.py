r"""Rambachan-Roth (HonestDiD) sensitivity of a fitted event study: :func:`honest`.

Takes the event-time coefficients and their covariance from a fit and hands
them to :func:`~pipeline.did.sensitivity.honest_from_estimates` (R HonestDiD's
numbers), leads before the reference period first, lags after it.

Which covariance
----------------
For an :class:`~pipeline.did.regression.EventStudyFit`, ``covariance=``

``"cv3"`` (default)
    The cluster jackknife of the coefficient vector,
    :math:`V_3 = \frac{G-1}{G}\sum_g(\hat\beta_{(-g)} - \bar\beta)(\hat\beta_{(-g)} - \bar\beta)'`
    (CV3J, centred on the mean of the leave-one-cluster-out estimates; its
    diagonal is the fit's ``std_error_cv3``). With few treated clusters the
    CV1 sandwich rests on the treated clusters' fitted scores, which the
    regression shrinks towards zero, so it understates the variance and
    intervals built on it under-cover; the jackknife removes each cluster's
    own leverage and is the variance MacKinnon, Nielsen and Webb (2023)
    recommend when clusters are few or unbalanced. HonestDiD's intervals are
    normal-theory given the covariance, so the covariance is where the few
    treated clusters must be accounted for. It is not defined when leaving
    out some cluster leaves an event time without data (an event time seen in
    one treated cluster only): then narrow ``window`` or choose another.
``"cv1"``
    The fit's own CRV1 covariance (with the package's small-sample factor).
``"bootstrap"``
    The covariance of the unrestricted wild cluster bootstrap's coefficient
    draws (aggregated path; ``draws``, ``weights``, ``seed``), times the
    fit's small-sample factor. Offered for comparison only: the draws are
    :math:`A^{-1}\sum_g w_g s_g` with :math:`E[w_g w_h] = 1\{g = h\}`, so
    their covariance is the CV1 covariance up to Monte-Carlo error (exactly,
    with all Rademacher sign vectors) and inherits its downward bias.

For a :class:`~pipeline.did.staggered.GroupTimeFit` (or its ``"dynamic"``
:class:`~pipeline.did.staggered.AggregateFit`) the coefficients are the
event-time aggregates and the covariance their influence-function one,
:math:`S'S/n^2` with S the cluster sums (R HonestDiD's ``honest_did`` for
``AGGTEobj``); the fit must use ``base_period="universal"``, so that every
lead is measured against the same reference period (e = -1 - anticipation),
as HonestDiD requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.did.data import Panel
from pipeline.did.event_study import event_dummies
from pipeline.did.inference.bootstrap import all_sign_vectors, weight_chunks
from pipeline.did.regression import EventStudyFit, event_study
from pipeline.did.sensitivity import Method, Target, honest_from_estimates
from pipeline.did.staggered import AggregateFit, GroupTimeFit
from pipeline.did.twfe import demean_cells, fit_cells, leave_one_cluster_out

__all__ = ["Covariance", "event_study_estimates", "honest"]

Covariance = Literal["cv1", "cv3", "bootstrap"]
"""The covariance of an event study's coefficients handed to HonestDiD."""

_COVARIANCES = ("cv1", "cv3", "bootstrap")


def honest(fit: Any, *, method: Method = "relative_magnitudes", values: Sequence[float] = (0.5, 1.0, 2.0),
                       target: Target | np.ndarray = "average", covariance: Covariance | None = None,
                       window: tuple[int, int] | None = None, alpha: float = 0.05, draws: int = 9_999,
                       weights: str = "webb", seed: int = 0, **options: Any) -> pl.DataFrame:
    r"""Robust confidence intervals for the average (or first) post-period effect under bounded trend violations.

    .. math::

        \hat\beta \sim N(\beta, \Sigma),\quad
        \beta = (0, \tau_{post}')' + \delta,\quad \delta \in \Delta(M),\quad
        \theta = l'\tau_{post}

    Parameters
    ----------
    fit : EventStudyFit, GroupTimeFit or a "dynamic" AggregateFit
    method : ``"relative_magnitudes"`` (:math:`\bar M`) or ``"smoothness"`` (M)
    values : the bounds :math:`\bar M` or M, one interval each
    target : ``"average"`` of the lags, the ``"first"``, or weights
    covariance : ``"cv3"`` (default for an event study), ``"cv1"`` or
        ``"bootstrap"``; see the module docstring for why CV3. Not used for
        group-time fits (influence-function covariance).
    window : (first, last) event times to keep (default: all)
    alpha : one minus the coverage
    draws, weights, seed : of the bootstrap covariance
    options : passed to :func:`~pipeline.did.sensitivity.honest_from_estimates`
        (``grid_points``, ``theta_grid``)

    Returns
    -------
    polars.DataFrame
        ``value``, ``ci_low``, ``ci_high``, one row per value.
    """
    beta, sigma, num_pre, num_post = event_study_estimates(fit, covariance=covariance, window=window, draws=draws,
                                                           weights=weights, seed=seed)
    return honest_from_estimates(beta, sigma, num_pre=num_pre, num_post=num_post, method=method, values=values,
                                 target=target, alpha=alpha, **options)


def event_study_estimates(fit: Any, *, covariance: Covariance | None = None, window: tuple[int, int] | None = None,
                          draws: int = 9_999, weights: str = "webb",
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(betahat, sigma, num_pre, num_post) of a fit, leads first, the reference period left out."""
    if isinstance(fit, EventStudyFit):
        chosen = "cv3" if covariance is None else covariance
        if chosen not in _COVARIANCES:
            raise ValueError(f"honest: covariance: expected one of {_COVARIANCES}, found {chosen!r}")
        r = fit.result
        times, beta, reference = np.asarray(r.event_times), np.asarray(r.estimate, dtype=float), r.reference
        sigma = {"cv1": lambda: np.asarray(r.vcov, dtype=float), "cv3": lambda: _cv3_covariance(fit),
                 "bootstrap": lambda: _bootstrap_covariance(fit, draws, weights, seed)}[chosen]()
    elif isinstance(fit, (GroupTimeFit, AggregateFit)):
        if covariance is not None:
            raise ValueError(f"honest: a group-time fit has the influence-function covariance only, "
                             f"found covariance={covariance!r}")
        times, beta, sigma, reference = _dynamic_estimates(fit)
    else:
        raise TypeError(f"honest: expected an EventStudyFit or GroupTimeFit, found {type(fit).__name__}")
    keep = np.ones(times.size, dtype=bool) if window is None else (times >= window[0]) & (times <= window[1])
    keep &= times != reference
    pre, post = keep & (times < reference), keep & (times > reference)
    if not pre.any() or not post.any():
        raise ValueError(f"honest: expected leads and lags around the reference {reference} within "
                         f"{window}, found event times {times[keep].tolist()}")
    idx = np.r_[np.flatnonzero(pre), np.flatnonzero(post)]
    return beta[idx], sigma[np.ix_(idx, idx)], int(pre.sum()), int(post.sum())


def _cv3_covariance(fit: EventStudyFit) -> np.ndarray:
    """The cluster-jackknife (CV3J) covariance of the event-study coefficients."""
    r = fit.result
    if fit._agg is not None:
        cells = fit._agg.cells
        X = event_dummies(fit._event_matrix(), r.event_times)
        jack = leave_one_cluster_out(cells.n.astype(float), cells.sums.astype(float), X)
    else:
        jack = _general_leave_one_out(fit)
    bad = np.flatnonzero(np.isnan(jack).any(axis=1))
    if bad.size:
        raise ValueError(f"honest: the CV3 covariance is not defined: without cluster(s) at position(s) "
                         f"{bad.tolist()} some event time is not identified; narrow window= or use covariance='cv1'")
    G = jack.shape[0]
    dev = jack - jack.mean(axis=0)
    return (G - 1) / G * dev.T @ dev


def _general_leave_one_out(fit: EventStudyFit) -> np.ndarray:
    """(G, K) event-study coefficients re-estimated without each cluster (the general path: refits)."""
    p, r = fit.panel, fit.result
    labels = p.frame[p.cluster].unique().sort().to_list()
    out = np.full((len(labels), r.event_times.size), np.nan)
    for k, c in enumerate(labels):
        try:
            sub = event_study(Panel(p.frame.filter(p.frame[p.cluster] != c), unit=p.unit, time=p.time,
                                    cluster=p.cluster, treatment=p.treatment), fit.outcome,
                              reference=r.reference, cv3=False).result
        except (ValueError, np.linalg.LinAlgError):
            continue
        pos = np.searchsorted(r.event_times, sub.event_times)
        out[k, pos] = sub.estimate
    return out


def _bootstrap_covariance(fit: EventStudyFit, draws: int, weights: str, seed: int) -> np.ndarray:
    """Covariance of the unrestricted wild cluster bootstrap's coefficient draws, times the fit's factor."""
    if fit._agg is None:
        raise ValueError("honest: covariance='bootstrap' needs the aggregated path, found the general one")
    if weights not in ("webb", "rademacher"):
        raise ValueError(f"weights: expected 'webb' or 'rademacher', found {weights!r}")
    cells, r = fit._agg.cells, fit.result
    X = event_dummies(fit._event_matrix(), r.event_times)
    n, sums = cells.n.astype(float), cells.sums.astype(float)
    base = fit_cells(n, sums, X)
    Xt = demean_cells(n, X)
    A = np.einsum("g,kgt,lgt->kl", n, Xt, Xt)
    G = cells.n_clusters
    W = all_sign_vectors(G) if weights == "rademacher" and 2**G <= draws else \
        np.concatenate(list(weight_chunks(weights, G, int(draws), seed)))
    delta = np.linalg.solve(A, (W @ base.scores).T).T  # beta* - beta, (draws, K)
    return r.ssc * delta.T @ delta / delta.shape[0]


def _dynamic_estimates(fit: GroupTimeFit | AggregateFit) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Event times, estimates, influence-function covariance and reference of the dynamic aggregation."""
    gt = fit.result
    if isinstance(fit, AggregateFit) and fit.aggregation.type != "dynamic":
        raise ValueError(f"honest: expected the 'dynamic' aggregate, found {fit.aggregation.type!r}")
    if gt.spec.base_period != "universal":
        raise ValueError("honest: a group-time fit needs base_period='universal' (every lead against "
                         f"one reference period), found {gt.spec.base_period!r}")
    agg = fit.aggregation if isinstance(fit, AggregateFit) else gt.aggregate("dynamic")
    times = agg.table["event_time"].to_numpy()
    beta = agg.table["estimate"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    S = fit._cluster_sums(agg.table_influence)
    return times, beta, S.T @ S / gt.n_units**2, -1 - gt.spec.anticipation
