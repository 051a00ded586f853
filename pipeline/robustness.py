"""How robust is the headline? Leave-one-out, anticipation, and the cost view.

Everything here starts from the baseline-municipality x month cells of a monthly
outcome (:func:`pipeline.estimates.monthly_cells`) and reuses the estimators of
:mod:`pipeline.did`; nothing is estimated twice in another way.

* **Leave one out.** The headline (TWFE and clean controls) without each pilot
  municipality in turn, and without each comparison municipality in turn: if
  one municipality drives the result, this shows it.
* **Anticipation.** Tampere's own project ran from 2017-11, so the effect may
  start before the pilot. The headline and event study are rerun under the
  schedule of ``config.anticipation_schedule``; and the *window check* estimates
  the effect in the extra months alone (e.g. Tampere 2017-11..12), on the months
  before any municipality's pilot started, against every municipality not in
  the window, with placebo variance (one treated municipality).
* **Cost view.** The per-person-month effect on euros granted, scaled to the
  pilot: per treated cohort member over the pilot months and in total, beside
  what was actually granted and the counterfactual it implies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from pipeline.did.cells import Cells
from pipeline.did.clean_controls import clean_controls_cells
from pipeline.did.event_study import event_study_cells
from pipeline.did.twfe import twfe_cells
from pipeline.schedule import event_times, month_numbers, treatment_from_schedule
from schemas.config import EvaluationConfig

ROBUST_ESTIMATORS = ("twfe", "clean_controls")


def _fit(cells: Cells, estimator: str, alpha: float) -> Any:
    if estimator == "twfe":
        return twfe_cells(cells, alpha=alpha, cv3=False)
    return clean_controls_cells(cells, alpha=alpha)


def _row(outcome: str, analysis: str, estimator: str, variant: str, res: Any, n_persons: int,
         parameter: float | None = None, n_treated_persons: int | None = None) -> dict[str, Any]:
    return {
        "n_treated_persons": n_treated_persons,
        "outcome": outcome, "analysis": analysis, "estimator": estimator, "variant": variant,
        "parameter": parameter, "estimate": res.estimate, "std_error": res.std_error,
        "ci_low": res.ci_low, "ci_high": res.ci_high, "p_value": res.p_value, "n_persons": n_persons,
        "n_clusters": res.n_clusters, "n_treated_clusters": res.n_treated_clusters,
    }


def leave_one_out(cells: Cells, outcome: str, config: EvaluationConfig) -> list[dict[str, Any]]:
    """The headline without each municipality in turn (pilot and comparison municipalities)."""
    rows: list[dict[str, Any]] = []
    treated = cells.treated_clusters
    alpha = config.inference.alpha
    for g in range(cells.n_clusters):
        keep = np.ones(cells.n_clusters, dtype=bool)
        keep[g] = False
        sub = cells.subset(keep)
        if not sub.treated_clusters.any() or sub.treated_clusters.all():
            continue
        analysis = "leave_one_out_treated" if treated[g] else "leave_one_out_comparison"
        for estimator in ROBUST_ESTIMATORS:
            res = _fit(sub, estimator, alpha)
            rows.append(_row(outcome, analysis, estimator, f"without={cells.clusters[g]}", res, int(sub.n.sum()),
                             n_treated_persons=int(sub.n[sub.treated_clusters].sum())))
    return rows


def anticipation(cells: Cells, outcome: str, config: EvaluationConfig) -> dict[str, pl.DataFrame]:
    """The headline and event study under the anticipation schedule, and the window check.

    Returns frames for ``robustness``, ``event_study`` and ``pretrend_tests``
    (estimator ``twfe_event_study_anticipation``); empty when no anticipation
    schedule is configured or it changes nothing.
    """
    if not config.anticipation_schedule:
        return {}
    schedule = config.anticipation()
    treat = treatment_from_schedule(cells, schedule)
    if np.array_equal(treat != 0, cells.treat != 0):
        return {}
    alpha = config.inference.alpha
    variant = ", ".join(f"{code} from {p.start}" for code, p in sorted(config.anticipation_schedule.items()))
    shifted = cells.with_treatment(treat)
    n_persons = int(cells.n.sum())
    rows = [_row(outcome, "anticipation", est, variant, _fit(shifted, est, alpha), n_persons)
            for est in ROBUST_ESTIMATORS]
    window = _window_check(cells, treat, alpha)
    if window is not None:
        res, persons = window
        rows.append(_row(outcome, "anticipation_window", "clean_controls", variant, res, persons))
    es = event_study_cells(shifted, event_times(shifted, schedule), alpha=alpha, cv3=False)
    estimator = "twfe_event_study_anticipation"
    wald = es.pretrend_test()
    return {
        "robustness": pl.DataFrame(rows),
        "event_study": es.tidy().with_columns(pl.lit(outcome).alias("outcome"), pl.lit(estimator).alias("estimator")),
        "pretrend_tests": pl.DataFrame([{"outcome": outcome, "estimator": estimator, "statistic": wald.statistic,
                                         "df": f"{wald.df_num},{wald.df_denom}", "p_value": wald.p_value}]),
    }


def _window_check(cells: Cells, treat: np.ndarray, alpha: float) -> tuple[Any, int] | None:
    """Effect in the anticipation months alone: before any pilot start, window municipalities vs the rest."""
    extra = (treat != 0) & (cells.treat == 0)
    started = np.nonzero((cells.treat != 0).any(axis=0))[0]
    if not extra.any() or started.size == 0:
        return None
    before = np.arange(cells.n_periods) < started[0]
    if not extra[:, before].any() or before.sum() < 3:
        return None
    pre = Cells(cells.clusters, cells.times[before], cells.n, cells.sums[:, before], extra[:, before].astype(float))
    if pre.treated_clusters.all():
        return None
    res = clean_controls_cells(pre, alpha=alpha)
    return res, int(pre.n.sum())


def cost_view(cells: Cells, estimates: list[dict[str, Any]], outcome: str) -> pl.DataFrame:
    """Per-person-month effects on euros scaled to the pilot months (one row per estimator of the headline)."""
    on = cells.treat != 0
    pilot_pm = int((cells.n[:, None] * on).sum())
    treated_persons = int(cells.n[cells.treated_clusters].sum())
    observed = float(cells.sums[on].sum())
    rows = []
    for est in estimates:
        if est["outcome"] != outcome or est["subgroup"] != "all" or est["estimate"] is None:
            continue
        total = est["estimate"] * pilot_pm
        lo, hi = (est[c] * pilot_pm if est[c] is not None else None for c in ("ci_low", "ci_high"))
        counterfactual = observed - total
        rows.append({
            "outcome": outcome, "estimator": est["estimator"], "effect_per_person_month": est["estimate"],
            "pilot_person_months": pilot_pm, "treated_persons": treated_persons,
            "effect_per_member": total / treated_persons,
            "effect_per_member_ci_low": None if lo is None else lo / treated_persons,
            "effect_per_member_ci_high": None if hi is None else hi / treated_persons,
            "effect_total": total, "effect_total_ci_low": lo, "effect_total_ci_high": hi,
            "observed_total": observed, "counterfactual_total": counterfactual,
            "change_share": total / counterfactual if counterfactual else None,
            "n_persons": treated_persons,
        })
    return pl.DataFrame(rows)


# ------------------------------------------------------------ sensitivity (HonestDiD)
HONEST_MBAR = (0.0, 0.5, 1.0, 1.5, 2.0)
HONEST_M_FACTORS = (0.0, 0.5, 1.0, 2.0)
"""Smoothness bounds M as multiples of the largest second difference seen among the leads."""


def honest_rows(es: Any, outcome: str, config: EvaluationConfig, *, pilot_months: int) -> list[dict[str, Any]]:
    """Rambachan-Roth robust confidence sets for the average effect over the first ``pilot_months`` lags.

    The leads and the lags 0 .. pilot_months-1 of the event study (with their
    CRV1 covariance) enter; t(G-1) critical values, as everywhere in kokeilu.
    """
    from pipeline.did.flci import honest_did

    times = np.asarray(es.event_times)
    lead = np.flatnonzero(times < es.reference)
    lag = np.flatnonzero((times > es.reference) & (times < pilot_months))
    if lead.size < 2 or lag.size < 1:
        return []
    idx = np.concatenate([lead, lag])
    beta, vcov = np.asarray(es.estimate)[idx], np.asarray(es.vcov)[np.ix_(idx, idx)]
    pre = np.concatenate([beta[: lead.size], [0.0]])
    curvature = float(np.max(np.abs(np.diff(pre, n=2)))) if pre.size >= 3 else 0.0
    m_grid = sorted({f * curvature for f in HONEST_M_FACTORS})
    res = honest_did(beta, vcov, n_pre=int(lead.size), n_post=int(lag.size), mbar_grid=HONEST_MBAR,
                     m_grid=m_grid, alpha=config.inference.alpha, df=es.n_clusters - 1)
    common = {"outcome": outcome, "estimator": "twfe_event_study", "n_persons": es.n_units,
              "n_clusters": es.n_clusters, "n_treated_clusters": es.n_treated_clusters,
              "std_error": res.std_error, "p_value": None}
    rows = []
    for b in res.bounds:
        name = "mbar" if b.restriction == "relative_magnitudes" else "m"
        rows.append(dict(common, analysis=f"honest_{b.restriction}", variant=f"{name}={b.m:.6g}", parameter=b.m,
                         estimate=res.estimate, ci_low=b.ci_low, ci_high=b.ci_high))
    rows.append(dict(common, analysis="honest_breakdown", variant="relative_magnitudes", parameter=None,
                     estimate=res.breakdown_mbar, std_error=None, ci_low=None, ci_high=None))
    return rows


# ------------------------------------------------------------ synthetic DiD
def sdid_randomization(cells: Cells, outcome: str, config: EvaluationConfig,
                       row: dict[str, Any]) -> list[dict[str, Any]]:
    """Randomization p-value of the block-averaged SDID estimate (``row`` gains it) and its ``inference`` row.

    The pilot's paths are reassigned to distinct municipalities and every block
    re-estimated; the number of draws is ``sdid_replications`` (each draw refits
    the weights, as a placebo replication does).
    """
    from pipeline.did.inference.synthetic import blocks_randomization

    inf = config.inference
    ri = blocks_randomization(cells.sums / cells.n[:, None], cells.treat, max_assignments=inf.subgroup_max_assignments,
                              draws=inf.sdid_replications, seed=inf.seed)
    row["p_value_randomization"] = ri.p_value
    return [{"outcome": outcome, "estimator": "sdid", "subgroup": "all", "method": "randomization",
             "p_value": ri.p_value, "ci_low": None, "ci_high": None, "exact": bool(ri.exact),
             "draws": int(ri.n_assignments),
             "assumes": "sharp null of no effect; pilot paths reassigned across municipalities, each adoption "
                        "block re-estimated with the observed regularisation; statistic |estimate|"}]


def sdid_row(cells: Cells, outcome: str, config: EvaluationConfig) -> dict[str, Any] | None:
    """Synthetic DiD on the municipality x month panel of cohort means, one adoption block at a time.

    SDID needs block treatment, and the pilot has two blocks: the municipalities
    piloting the same months (five, 2018-01 .. 2019-12) and Tornio (2018 only).
    Each block is estimated against the never-treated municipalities on its
    pre-period and its pilot months (months after the block's pilot are left
    out), and the block estimates are averaged with weights by treated
    municipality-months -- the estimand is the ATT over pilot municipality-months,
    each municipality weighted equally (SDID works on means, not persons). The
    standard error combines the blocks' placebo variances as if independent.
    """
    from pipeline.did.sdid import sdid_matrix

    treated = cells.treated_clusters
    controls = np.nonzero(~treated)[0]
    paths: dict[bytes, list[int]] = {}
    for g in np.nonzero(treated)[0]:
        paths.setdefault((cells.treat[g] != 0).tobytes(), []).append(int(g))
    means = cells.sums / cells.n[:, None]
    estimates, variances, weights = [], [], []
    for members in paths.values():
        on = cells.treat[members[0]] != 0
        first, last = np.flatnonzero(on)[[0, -1]]
        if not on[first:last + 1].all() or first < 2 or controls.size < 2:
            return None
        cols = np.arange(last + 1)
        Y = np.vstack([means[controls][:, cols], means[members][:, cols]])
        res = sdid_matrix(Y, n_treated=len(members), n_post=int(last + 1 - first),
                          replications=config.inference.sdid_replications, seed=config.inference.seed,
                          alpha=config.inference.alpha)
        estimates.append(res.estimate)
        variances.append(res.std_error ** 2)
        weights.append(len(members) * int(on.sum()))
    w = np.asarray(weights, dtype=float) / sum(weights)
    est = float(w @ np.asarray(estimates))
    se = float(np.sqrt(w ** 2 @ np.asarray(variances)))
    from scipy import special  # scipy.stats' normal quantile and tail without importing scipy.stats

    z = float(special.ndtri(1 - config.inference.alpha / 2))
    return {
        "outcome": outcome, "estimator": "sdid", "subgroup": "all", "estimate": est, "std_error": se,
        "ci_low": est - z * se, "ci_high": est + z * se,
        "p_value": float(2 * special.ndtr(-abs(est / se))) if se > 0 else None,
        "n_obs": int(cells.n_clusters * cells.n_periods), "n_persons": int(cells.n.sum()),
        "n_treated_persons": int(cells.n[treated].sum()),
        "n_clusters": cells.n_clusters, "n_treated_clusters": int(treated.sum()), "path": "aggregated",
    }
