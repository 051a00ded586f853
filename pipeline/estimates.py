"""What is estimated for each outcome: from the panels in DuckDB to rows of ``results.*``.

For a monthly outcome the panel is reduced once, in DuckDB, to
baseline-municipality x month sums (:class:`~pipeline.did.Cells`) of the
whole cohort and of every subgroup level (:func:`pipeline.readers.monthly_sums`:
one scan of the panel for all monthly outcomes); under intent to treat every cohort member stays
in the baseline municipality, which is also the cluster, so the aggregated path
is exact. From the cells come:

* ``twfe``: two-way fixed effects with one pilot dummy (CRV1, t(G-1), CV3),
  with the wild cluster bootstrap (restricted, Webb weights) and randomization
  inference keeping the design (the pilot's paths reassigned across
  municipalities, fully enumerated where feasible);
* ``clean_controls``: the heterogeneity- and exit-robust estimator of
  :mod:`pipeline.did.clean_controls`, with the same wild cluster bootstrap
  (WCR, WCU) and randomization inference for the whole cohort, studentised by
  its own variance (:mod:`pipeline.did.inference.clean_controls`);
* ``event_study``: leads and lags relative to each municipality's start, and
  the joint test of the leads;
* the same estimators by municipality, age band, sex and household type.

Yearly (``long_term_receipt``) and AVAIN outcomes are estimated the same way on
their own panels; the AVAIN panel is unbalanced (assessments are irregular), so
it takes the general path (linearmodels) with assessing municipality and period
(before / during) effects.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import polars as pl

from pipeline import readers
from pipeline.did.cells import Cells
from pipeline.did.clean_controls import clean_controls_cells
from pipeline.did.event_study import event_study_cells
from pipeline.did.twfe import twfe_cells
from pipeline.did.inference.pretrend import pretrend_randomization
from pipeline.did.inference.randomization import design_paths
from pipeline.schedule import event_times
from schemas.config import EvaluationConfig


# ------------------------------------------------------------------------ cells
def monthly_cells(con: duckdb.DuckDBPyConnection, outcome: str, *, where: str = "true",
                  params: list[Any] | None = None) -> Cells | None:
    """Baseline-municipality x month sums of a monthly outcome (:func:`~pipeline.readers.monthly_frame`)."""
    return _cells(readers.monthly_frame(con, outcome, where=where, params=params), "month")


def yearly_cells(con: duckdb.DuckDBPyConnection, outcome: str, *, where: str = "true",
                 params: list[Any] | None = None) -> Cells | None:
    """Baseline-municipality x year sums of a yearly outcome."""
    return _cells(readers.yearly_sums(con, outcome, where=where, params=params), "month")


def _cells(frame: pl.DataFrame, time: str) -> Cells | None:
    if frame.height == 0:
        return None
    clusters = frame["kuntanumero"].unique(maintain_order=True).to_numpy()
    times = np.sort(frame[time].unique().to_numpy())
    G, T = len(clusters), len(times)
    if frame.height != G * T:
        return None
    sums = frame["s"].to_numpy().reshape(G, T)
    n_all = frame["n"].to_numpy().reshape(G, T)
    if np.any(n_all != n_all[:, :1]):
        return None
    treat = frame["d"].to_numpy().reshape(G, T)
    return Cells(clusters, times, n_all[:, 0].astype(float), sums, treat)


# -------------------------------------------------------------------- estimates
def _row(outcome: str, estimator: str, subgroup: str, res: Any, n_persons: int, *,
         std_error_cv3: float | None = None, n_treated_persons: int | None = None) -> dict[str, Any]:
    return {
        "n_treated_persons": n_treated_persons,
        "outcome": outcome, "estimator": estimator, "subgroup": subgroup,
        "estimate": res.estimate, "std_error": res.std_error, "ci_low": res.ci_low, "ci_high": res.ci_high,
        "p_value": res.p_value, "std_error_cv3": std_error_cv3,
        "n_obs": res.n_obs, "n_persons": n_persons, "n_clusters": res.n_clusters,
        "n_treated_clusters": res.n_treated_clusters, "path": res.path,
    }


def estimate_cells(cells: Cells, *, outcome: str, subgroup: str, config: EvaluationConfig,
                   infer: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """TWFE and clean-control rows (with few-cluster inference when ``infer``) for one cell matrix."""
    rows, inference = [], []
    n_persons = int(cells.n.sum())
    n_treated = int(cells.n[cells.treated_clusters].sum())  # the persons the estimate rests on (disclosure)
    alpha = config.inference.alpha
    tw = twfe_cells(cells, alpha=alpha)
    row = _row(outcome, "twfe", subgroup, tw, n_persons, std_error_cv3=tw.std_error_cv3, n_treated_persons=n_treated)
    if infer:
        extra, inf_rows = few_cluster_inference(cells, config, subgroup=subgroup != "all")
        row.update(extra)
        inference += [dict(r, outcome=outcome, estimator="twfe", subgroup=subgroup) for r in inf_rows]
        inference.append({"outcome": outcome, "estimator": "twfe", "subgroup": subgroup, "method": "cv3_jackknife",
                          "p_value": tw.p_value_cv3, "ci_low": None, "ci_high": None, "exact": False,
                          "draws": None, "assumes": "cluster jackknife standard error, t(G-1)"})
    rows.append(row)
    if cells.treated_clusters.any() and (~cells.treated_clusters).any():
        cc = clean_controls_cells(cells, alpha=alpha)
        cc_row = _row(outcome, "clean_controls", subgroup, cc, n_persons, n_treated_persons=n_treated)
        if infer and subgroup == "all":  # the whole cohort's: the subgroups' would double their inference time
            extra, inf_rows = clean_controls_inference(cells, config)
            cc_row.update(extra)
            inference += [dict(r, outcome=outcome, estimator="clean_controls", subgroup=subgroup) for r in inf_rows]
        rows.append(cc_row)
    if cells.treated_clusters.sum() == 1:
        return one_treated_cluster(rows, inference, n_comparison=int((~cells.treated_clusters).sum()))
    return rows, inference


INVALID_WITH_ONE_TREATED = ("p_value", "ci_low", "ci_high", "std_error_cv3", "p_value_wild_bootstrap",
                            "ci_low_wild_bootstrap", "ci_high_wild_bootstrap")
"""did_estimates columns not published for one treated cluster: CV1 and the cluster jackknife rest on the one
treated cluster's score, and the wild cluster bootstraps on its sign alone."""


def one_treated_cluster(rows: list[dict[str, Any]], inference: list[dict[str, Any]], *,
                        n_comparison: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of an analysis with one treated cluster (a pilot municipality against the comparisons): the p-values
    and intervals of methods invalid there (CV1, CV3, WCR, WCU) are NULL with the reason; the randomization
    test, which compares the municipality with each comparison municipality in its place (Conley and Taber's
    idea, exact here), stays, with its smallest attainable p-value stated."""
    smallest = 1 / (n_comparison + 1)
    note = (f"one treated municipality: CV1, CV3 and wild cluster bootstrap p-values and intervals are not valid "
            f"(under no effect CV1 rejects far too often and WCR almost never) and are withheld; read "
            f"p_value_randomization, whose smallest attainable value is 1/{n_comparison + 1} = {smallest:.3f}")
    for row in rows:
        row.update(dict.fromkeys(INVALID_WITH_ONE_TREATED), validity_note=note)
    for r in inference:
        if r["method"] == "randomization":
            r["validity_note"] = (f"valid with one treated municipality: it is compared with each of the "
                                  f"{n_comparison} comparison municipalities in its place; smallest attainable "
                                  f"p-value 1/{n_comparison + 1} = {smallest:.3f}")
        else:
            r.update(p_value=None, ci_low=None, ci_high=None,
                     validity_note="not valid with one treated municipality: withheld")
    return rows, inference


def clean_controls_inference(cells: Cells, config: EvaluationConfig) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wild cluster bootstrap (WCR and WCU, two or more treated municipalities) and randomization inference
    for the clean-control estimate, with its own variance as the studentisation."""
    from pipeline.did.inference import clean_controls as cc_inference

    inf = config.inference
    out: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    if cells.treated_clusters.sum() >= 2:
        wcr, wcu = cc_inference.wild_bootstraps(cells, draws=inf.bootstrap_draws, weights=inf.bootstrap_weights,
                                                restricted=(True, False), alpha=inf.alpha, seed=inf.seed)
        for name, r, assumes in (
            (f"wcr_{inf.bootstrap_weights}", wcr, "wild cluster bootstrap-t of the clean-control estimate, "
                                                  "constant effect imposed; CI by test inversion"),
            (f"wcu_{inf.bootstrap_weights}", wcu, "wild cluster bootstrap-t of the clean-control estimate, "
                                                  "unrestricted; percentile-t CI"),
        ):
            out.append({"method": name, "p_value": r.p_value, "ci_low": r.ci_low, "ci_high": r.ci_high,
                        "exact": bool(r.exact_enumeration), "draws": int(r.draws), "assumes": assumes})
        extra.update(p_value_wild_bootstrap=wcr.p_value, ci_low_wild_bootstrap=wcr.ci_low,
                     ci_high_wild_bootstrap=wcr.ci_high)
    # enumerated up to the subgroups' limit even for the whole cohort: each assignment costs more than TWFE's
    ri = cc_inference.randomization(cells, design_paths(cells), max_assignments=inf.subgroup_max_assignments,
                                    draws=inf.randomization_draws, seed=inf.seed, alpha=inf.alpha)
    out.append({"method": "randomization", "p_value": ri.p_value, "ci_low": ri.ci_low, "ci_high": ri.ci_high,
                "exact": bool(ri.exact), "draws": int(ri.n_assignments),
                "assumes": "sharp null of a constant effect; pilot paths reassigned across municipalities; "
                           "statistic |t| of the clean-control estimate (|estimate| with one treated municipality); "
                           "CI by test inversion"})
    extra["p_value_randomization"] = ri.p_value
    return extra, out


def few_cluster_inference(cells: Cells, config: EvaluationConfig, *,
                          subgroup: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wild cluster bootstrap (WCR and WCU) and randomization inference for the TWFE coefficient."""
    from pipeline.did.inference.bootstrap import wild_cluster_bootstraps
    from pipeline.did.inference.randomization import randomization_test

    inf = config.inference
    out: list[dict[str, Any]] = []
    wcr, wcu = wild_cluster_bootstraps(cells, draws=inf.bootstrap_draws, weights=inf.bootstrap_weights,
                                       restricted=(True, False), alpha=inf.alpha, seed=inf.seed)
    for name, r, assumes in (
        (f"wcr_{inf.bootstrap_weights}", wcr, "wild cluster bootstrap-t, null imposed; CI by test inversion"),
        (f"wcu_{inf.bootstrap_weights}", wcu, "wild cluster bootstrap-t, unrestricted; percentile-t CI"),
    ):
        out.append({"method": name, "p_value": r.p_value, "ci_low": r.ci_low, "ci_high": r.ci_high,
                    "exact": bool(r.exact_enumeration), "draws": int(r.draws), "assumes": assumes})
    limit = inf.subgroup_max_assignments if subgroup else inf.randomization_max_assignments
    ri = randomization_test(cells, design_paths(cells), max_assignments=limit,
                            draws=inf.randomization_draws, seed=inf.seed, alpha=inf.alpha, ci=False)
    out.append({"method": "randomization", "p_value": ri.p_value, "ci_low": ri.ci_low, "ci_high": ri.ci_high,
                "exact": bool(ri.exact), "draws": int(ri.n_assignments),
                "assumes": "sharp null of no effect anywhere; pilot paths reassigned across municipalities "
                           "keeping the number treated and the path structure; statistic |t| with CRV1"})
    extra = {"p_value_wild_bootstrap": wcr.p_value, "ci_low_wild_bootstrap": wcr.ci_low,
             "ci_high_wild_bootstrap": wcr.ci_high, "p_value_randomization": ri.p_value}
    return extra, out


def monthly_outcome(sums: pl.DataFrame, config: EvaluationConfig, outcome: str) -> dict[str, pl.DataFrame]:
    """Every estimate of one monthly outcome from its :func:`~pipeline.readers.monthly_sums` frame."""
    cells = _cells(sums.filter(pl.col("dimension") == "all"), "month")
    if cells is None:
        return {}
    headline = outcome in config.headline_outcomes
    rows, inference = estimate_cells(cells, outcome=outcome, subgroup="all", config=config, infer=True)
    es = event_study_cells(cells, event_times(cells, config.schedule()), alpha=config.inference.alpha)
    event = es.tidy().with_columns(pl.lit(outcome).alias("outcome"), pl.lit("twfe_event_study").alias("estimator"))
    wald = es.pretrend_test()
    ri = pretrend_randomization(cells, event_times(cells, config.schedule()), draws=config.inference.pretrend_draws,
                                seed=config.inference.seed)
    pretrend = pl.DataFrame([{"outcome": outcome, "estimator": "twfe_event_study", "statistic": wald.statistic,
                              "df": f"{wald.df_num},{wald.df_denom}", "p_value": wald.p_value,
                              "p_value_randomization": ri.p_value, "draws": ri.draws}])
    sub_rows, sub_inf = subgroups(sums, config, outcome, cells, infer=headline)
    placebo = placebo_rows(cells, outcome, config) if headline else pl.DataFrame()
    out = {
        "did_estimates": pl.DataFrame(rows + sub_rows),
        "event_study": event,
        "pretrend_tests": pretrend,
        "inference": pl.DataFrame(inference + sub_inf) if inference or sub_inf else pl.DataFrame(),
        "placebo_size": placebo,
    }
    if headline:
        out = _merge(out, robustness_frames(cells, outcome, config, rows, es))
    return out


def robustness_frames(cells: Cells, outcome: str, config: EvaluationConfig, rows: list[dict[str, Any]],
                      es: Any) -> dict[str, pl.DataFrame]:
    """Synthetic DiD, leave-one-out, HonestDiD bounds, the anticipation rerun and, for euros, the cost view."""
    from pipeline import robustness

    sdid, sdid_inference = robustness.sdid_row(cells, outcome, config), []
    if sdid is not None:
        sdid_inference = robustness.sdid_randomization(cells, outcome, config, sdid)
        rows = rows + [sdid]
    pilot_months = int((cells.treat != 0).sum(axis=1).max())
    checks = robustness.leave_one_out(cells, outcome, config) + robustness.honest_rows(
        es, outcome, config, pilot_months=pilot_months)
    out: dict[str, pl.DataFrame] = {"did_estimates": pl.DataFrame([sdid]) if sdid else pl.DataFrame(),
                                    "robustness": pl.DataFrame(checks),
                                    "inference": pl.DataFrame(sdid_inference) if sdid_inference else pl.DataFrame()}
    out = _merge(out, robustness.anticipation(cells, outcome, config))
    if outcome == "amount_eur":
        out["cost"] = robustness.cost_view(cells, rows, outcome)
    return out


def _merge(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Tables of ``a`` with the rows of ``b`` appended."""
    out = dict(a)
    for name, frame in b.items():
        if frame is None or frame.height == 0:
            continue
        out[name] = pl.concat([out[name], frame], how="diagonal_relaxed") if name in out and out[name].height else frame
    return out


def subgroups(sums: pl.DataFrame, config: EvaluationConfig, outcome: str, cells: Cells, *,
              infer: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Estimates by municipality and by the configured person subgroups (levels from the sums' frame)."""
    rows: list[dict[str, Any]] = []
    inference: list[dict[str, Any]] = []
    if "municipality" in config.subgroups:
        treated = cells.treated_clusters
        for g in np.nonzero(treated)[0]:
            mask = ~treated
            mask[g] = True
            r, i = estimate_cells(cells.subset(mask), outcome=outcome, subgroup=f"municipality={cells.clusters[g]}",
                                  config=config, infer=infer)
            rows += r
            inference += i
    for dim in config.subgroups:
        if dim not in readers.SUBGROUP_COLUMNS:
            continue
        for (level,), frame in sums.filter(pl.col("dimension") == dim).partition_by(
                "level", maintain_order=True, as_dict=True).items():
            sub = _cells(frame, "month")
            if sub is None or sub.n_clusters < 3 or not sub.treated_clusters.any():
                continue
            r, i = estimate_cells(sub, outcome=outcome, subgroup=f"{dim}={level}", config=config, infer=infer)
            rows += r
            inference += i
    return rows, inference


def placebo_rows(cells: Cells, outcome: str, config: EvaluationConfig) -> pl.DataFrame:
    """Size of each test on the data itself: the pilot's paths given to comparison municipalities."""
    from pipeline.did.inference.placebo import placebo_size

    controls = cells.subset(~cells.treated_clusters)
    inf = config.inference
    frame = placebo_size(controls, design_paths(cells), replications=inf.placebo_replications,
                         bootstrap_draws=inf.placebo_draws, ri_draws=inf.placebo_draws, seed=inf.seed, alpha=inf.alpha)
    return frame.select(
        pl.lit(outcome).alias("outcome"), "method",
        pl.col("replications").cast(pl.Int32).alias("n_placebos"), "rejection_rate",
    )


def yearly_outcome(sums: pl.DataFrame, config: EvaluationConfig, outcome: str) -> dict[str, pl.DataFrame]:
    """Estimates of one yearly outcome from its :func:`~pipeline.readers.yearly_sums` (a year is treated if any
    of its months is)."""
    cells = _cells(sums, "month")
    if cells is None:
        return {}
    rows, inference = estimate_cells(cells, outcome=outcome, subgroup="all", config=config, infer=True)
    return {"did_estimates": pl.DataFrame(rows), "inference": pl.DataFrame(inference)}


def avain_outcomes(con: duckdb.DuckDBPyConnection, config: EvaluationConfig,
                   outcomes: list[str]) -> dict[str, pl.DataFrame]:
    """DiD of AVAIN outcomes between pilot and comparison municipalities, before (2017) vs during the pilot.

    Assessments are irregular, so the panel is unbalanced: the general path
    (linearmodels) with assessing-municipality and period effects, clustered by
    municipality. ``*_client_present`` rows repeat the analysis on assessments
    made with the client present (the sensitivity analysis of the design).
    """
    return avain_estimates(readers.avain_assessments(con), config, outcomes)


def avain_estimates(frame: pl.DataFrame, config: EvaluationConfig, outcomes: list[str]) -> dict[str, pl.DataFrame]:
    """:func:`avain_outcomes` from the rows of :func:`~pipeline.readers.avain_assessments`."""
    from pipeline.did.ols import did_ols

    rows = []
    for outcome in outcomes:
        for suffix, data in (("", frame), ("_client_present", frame.filter(pl.col("client_present") == 1))):
            data = data.filter(pl.col(outcome).is_not_null())
            if data.height == 0 or data["in_pilot"].sum() == 0:
                continue
            cell = (data.group_by("kuntanumero", "period")
                    .agg(pl.col(outcome).mean().alias("y"), pl.len().alias("n"), pl.col("in_pilot").max().alias("d"),
                         pl.col("person_key").n_unique().alias("persons")))
            both = cell.group_by("kuntanumero").len().filter(pl.col("len") == 2)["kuntanumero"]
            data = data.filter(pl.col("kuntanumero").is_in(both.implode()))
            if data.height == 0:
                continue
            res = did_ols(data[outcome].to_numpy().astype(float), data["in_pilot"].to_numpy().astype(float),
                          data["kuntanumero"].to_numpy(), (data["period"] == "during").to_numpy().astype(int),
                          data["kuntanumero"].to_numpy(), alpha=config.inference.alpha)
            row = _row(outcome + suffix, "did_2x2", "all", res, int(data["person_key"].n_unique()),
                       n_treated_persons=int(data.filter(pl.col("in_pilot") == 1)["person_key"].n_unique()))
            row["path"] = "general"
            rows.append(row)
    return {"did_estimates": pl.DataFrame(rows)} if rows else {}
