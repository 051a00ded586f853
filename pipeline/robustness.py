"""How robust is the headline? Leave-one-out, anticipation, and the cost view.

Everything here starts from the baseline-municipality x month cells of a monthly
outcome (:func:`pipeline.estimates.monthly_cells`) and reuses the estimators of
:mod:`pipeline.estimation`; nothing is estimated twice in another way.

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

from pipeline.estimation.cells import Cells
from pipeline.estimation.clean_controls import clean_controls_cells
from pipeline.estimation.event_study import event_study_cells
from pipeline.estimation.twfe import twfe_cells
from schemas.config import EvaluationConfig

ROBUST_ESTIMATORS = ("twfe", "clean_controls")


def treatment_from_schedule(cells: Cells, schedule: dict[str, tuple[str, str]]) -> np.ndarray:
    """(G, T) 0/1 pilot indicator of the cells' municipalities and months under ``schedule``."""
    months = _month_numbers(cells)
    treat = np.zeros(cells.sums.shape)
    for g, code in enumerate(cells.clusters):
        if code in schedule:
            start, end = (np.datetime64(m, "M").astype(np.int64) for m in schedule[code])
            treat[g] = (months >= start) & (months <= end)
    return treat


def _month_numbers(cells: Cells) -> np.ndarray:
    return np.array([str(t)[:7] for t in cells.times], dtype="datetime64[M]").astype(np.int64)


def _fit(cells: Cells, estimator: str, alpha: float) -> Any:
    if estimator == "twfe":
        return twfe_cells(cells, alpha=alpha, cv3=False)
    return clean_controls_cells(cells, alpha=alpha)


def _row(outcome: str, analysis: str, estimator: str, variant: str, res: Any, n_persons: int,
         parameter: float | None = None) -> dict[str, Any]:
    return {
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
            rows.append(_row(outcome, analysis, estimator, f"without={cells.clusters[g]}", res, int(sub.n.sum())))
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
    from pipeline.estimates import event_times

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
