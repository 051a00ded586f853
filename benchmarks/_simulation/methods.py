"""Every estimator x inference method of the report, on one municipality x month cell matrix.

The estimators' aggregated path (what ``from pipeline import did`` runs on a
balanced panel of persons nested in municipalities) is the set of cell-level
functions called here; calling them directly skips building a person-level
frame in each of thousands of replications. ``tests/benchmarks`` checks on one
replication that :func:`pipeline.did.twfe` and :func:`pipeline.did.clean_controls`
on a ``did.Panel`` of the cells give the same estimates and p-values.

Each method gives an :class:`Outcome`: the p-value of H0: effect = 0, its 95 %
interval if it has one, and the p-value of H0: effect = truth (coverage of a
test-inverted set for the methods whose interval is not computed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.optimize import nnls

from pipeline.did.cells import Cells
from pipeline.did.clean_controls import clean_controls_cells, contributions
from pipeline.did.event_study import event_study_cells
from pipeline.did.inference import clean_controls as cc_inference
from pipeline.did.inference.bootstrap import wild_cluster_bootstrap, wild_cluster_bootstraps
from pipeline.did.inference.pretrend import pretrend_randomization
from pipeline.did.inference.randomization import design_paths, randomization_test
from pipeline.did.inference.synthetic import blocks_randomization
from pipeline.did.sdid import sdid_matrix
from pipeline.did.sensitivity import honest_from_estimates
from pipeline.did.twfe import twfe_cells

from benchmarks._simulation.dgp import START

NAN = float("nan")


@dataclass(frozen=True)
class Draws:
    """Draws of the resampling methods."""

    bootstrap: int = 399
    randomization: int = 399
    sdid_placebo: int = 50
    sdid_randomization: int = 99
    pretrend_randomization: int = 399


@dataclass(frozen=True)
class Outcome:
    """One method in one replication: p-value of H0: 0, interval, p-value of H0: truth (NaN if not computed)."""

    p_value: float
    ci_low: float = NAN
    ci_high: float = NAN
    p_truth: float = NAN


def pooled(cells: Cells, seeds: np.ndarray, draws: Draws, *, effect: bool, truth: float) -> dict[tuple[str, str], Outcome]:
    """TWFE and clean controls with all their inference; intervals only under the planted effect."""
    out: dict[tuple[str, str], Outcome] = {}
    tw = twfe_cells(cells)
    q = float(special.stdtrit(tw.df, 0.975))
    out["twfe", "cv1"] = Outcome(tw.p_value, tw.ci_low, tw.ci_high)
    out["twfe", "cv3"] = Outcome(tw.p_value_cv3, tw.estimate - q * tw.std_error_cv3, tw.estimate + q * tw.std_error_cv3)
    wcr, wcu = wild_cluster_bootstraps(cells, draws=draws.bootstrap, weights="webb", restricted=(True, False),
                                       seed=int(seeds[0]), ci=effect)
    out["twfe", "wcr"] = Outcome(wcr.p_value, wcr.ci_low, wcr.ci_high)
    out["twfe", "wcu"] = Outcome(wcu.p_value, wcu.ci_low, wcu.ci_high)
    paths = design_paths(cells)
    ri = randomization_test(cells, paths, draws=draws.randomization, max_assignments=draws.randomization,
                            seed=int(seeds[1]), ci=effect)
    out["twfe", "randomization"] = Outcome(ri.p_value, ri.ci_low, ri.ci_high)
    cc = clean_controls_cells(cells)
    out["clean_controls", "t"] = Outcome(cc.p_value, cc.ci_low, cc.ci_high)
    cwcr, cwcu = cc_inference.wild_bootstraps(cells, draws=draws.bootstrap, weights="webb", restricted=(True, False),
                                              seed=int(seeds[2]), ci=effect)
    out["clean_controls", "wcr"] = Outcome(cwcr.p_value, cwcr.ci_low, cwcr.ci_high)
    out["clean_controls", "wcu"] = Outcome(cwcu.p_value, cwcu.ci_low, cwcu.ci_high)
    cri = cc_inference.randomization(cells, paths, max_assignments=draws.randomization, draws=draws.randomization,
                                     seed=int(seeds[3]), ci=effect)
    out["clean_controls", "randomization"] = Outcome(cri.p_value, cri.ci_low, cri.ci_high)
    return out


def synthetic(cells: Cells, seed: int, draws: Draws, *, effect: bool, truth: float) -> dict[tuple[str, str], Outcome]:
    """SDID by adoption block (as the pipeline's ``sdid_row``): placebo-SE normal interval and randomization p."""
    means = cells.sums / cells.n[:, None]
    treated = cells.treated_clusters
    controls = np.nonzero(~treated)[0]
    blocks: dict[bytes, list[int]] = {}
    for g in np.nonzero(treated)[0]:
        blocks.setdefault((cells.treat[g] != 0).tobytes(), []).append(int(g))
    est, var, wt = [], [], []
    for members in blocks.values():
        on = cells.treat[members[0]] != 0
        first, last = np.flatnonzero(on)[[0, -1]]
        cols = np.arange(last + 1)
        Y = np.vstack([means[controls][:, cols], means[members][:, cols]])
        r = sdid_matrix(Y, n_treated=len(members), n_post=int(last + 1 - first), replications=draws.sdid_placebo,
                        seed=seed)
        est.append(r.estimate)
        var.append(r.std_error ** 2)
        wt.append(len(members) * int(on.sum()))
    w = np.asarray(wt, dtype=float) / sum(wt)
    e, se = float(w @ np.asarray(est)), float(np.sqrt(w ** 2 @ np.asarray(var)))
    z = float(special.ndtri(0.975))
    out = {("sdid", "placebo_se"): Outcome(float(2 * special.ndtr(-abs(e / se))), e - z * se, e + z * se)}
    ri0 = blocks_randomization(means, cells.treat, max_assignments=0, draws=draws.sdid_randomization, seed=seed)
    p_truth = NAN
    if effect:
        p_truth = blocks_randomization(means - truth * cells.treat, cells.treat, max_assignments=0,
                                       draws=draws.sdid_randomization, seed=seed).p_value
    out["sdid", "randomization"] = Outcome(ri0.p_value, p_truth=p_truth)
    return out


def event_times(treat: np.ndarray) -> np.ndarray:
    """(G, T) months since 2018-01 for the treated municipalities, NaN for the others."""
    treated = treat.any(axis=1)
    return np.where(treated[:, None], np.arange(treat.shape[1])[None, :] - START, np.nan)


def event_study(cells: Cells, seed: int, draws: Draws, *, effect: bool, truth_lags: float,
                honest: bool, honest_rm: bool = False) -> dict[tuple[str, str], Outcome]:
    """Joint lead test (CRV1 F, randomization; no effect only) and HonestDiD sets at Mbar = 0 / M = 0."""
    E = event_times(cells.treat)
    es = event_study_cells(cells, E, cv3=False)
    out: dict[tuple[str, str], Outcome] = {}
    if not effect:
        out["event_study", "lead_test_f"] = Outcome(es.pretrend_test().p_value)
        out["event_study", "lead_test_randomization"] = Outcome(
            pretrend_randomization(cells, E, draws=draws.pretrend_randomization, seed=seed).p_value)
    if honest:
        times = np.asarray(es.event_times)
        lead = np.flatnonzero(times < es.reference)
        lag = np.flatnonzero((times > es.reference) & (times < 24))
        idx = np.concatenate([lead, lag])
        beta, vcov = np.asarray(es.estimate)[idx], np.asarray(es.vcov)[np.ix_(idx, idx)]
        sets = [("smoothness", "honest_sd_m0")] + ([("relative_magnitudes", "honest_rm_mbar0")] if honest_rm else [])
        for method, name in sets:
            b = honest_from_estimates(beta, vcov, num_pre=int(lead.size), num_post=int(lag.size), method=method,
                                      values=[0.0], grid_points=200 if method == "relative_magnitudes" else 1000)
            lo, hi = float(b["ci_low"][0]), float(b["ci_high"][0])
            p0 = 0.0 if not (lo <= 0.0 <= hi) else 1.0  # rejects 0 when 0 lies outside the set
            out["event_study", name] = Outcome(p0, lo, hi)
    return out


def _rank_half_width(placebo: np.ndarray, alpha: float) -> float:
    """Half-width of {b: (1 + #{|placebo| >= |est - b|}) / (m + 1) > alpha}: the k-th largest |placebo|."""
    a = np.sort(np.abs(placebo))[::-1]
    k = int(np.floor(alpha * (len(a) + 1)))  # need 1 + #exceeding > alpha (m + 1), i.e. #exceeding >= k
    return float(a[k - 1]) if k >= 1 else float("inf")


def _placebos(cells: Cells, path: np.ndarray) -> np.ndarray:
    """Clean-control estimate of each comparison municipality given ``path``, against the other comparisons."""
    controls = ~cells.treated_clusters
    sub = cells.subset(controls)
    out = np.empty(sub.n_clusters)
    for c in range(sub.n_clusters):
        treat = np.zeros_like(sub.treat)
        treat[c] = path
        out[c] = contributions(sub.with_treatment(treat))[3]
    return out


def per_municipality(cells: Cells, codes: list[str], seeds: np.ndarray, draws: Draws, *, effect: bool,
                     truths: dict[str, float], alpha: float = 0.05) -> dict[tuple[str, str, str], Outcome]:
    """Each treated municipality alone against the comparisons: CV1, WCR, randomization, CT/FP ranks, placebo t."""
    treated = cells.treated_clusters
    controls = ~treated
    n_c = cells.n[controls].astype(float)
    placebo_cache: dict[bytes, np.ndarray] = {}
    out: dict[tuple[str, str, str], Outcome] = {}
    for k, g in enumerate(np.nonzero(treated)[0]):
        code = str(codes[g])
        mask = controls.copy()
        mask[g] = True
        sub = cells.subset(mask)
        path = cells.treat[g]
        truth = truths.get(code, 0.0)
        tw = twfe_cells(sub, cv3=False)
        out[code, "twfe", "cv1"] = Outcome(tw.p_value, tw.ci_low, tw.ci_high)
        seed = int(seeds[k])
        wcr = wild_cluster_bootstrap(sub, draws=draws.bootstrap, restricted=True, seed=seed, ci=False)
        ri = randomization_test(sub, [path], max_assignments=10_000, seed=seed, ci=False)
        wcr_t = ri_t = NAN
        if effect:
            wcr_t = wild_cluster_bootstrap(sub, null=truth, draws=draws.bootstrap, restricted=True, seed=seed,
                                           ci=False).p_value
            ri_t = randomization_test(sub, [path], null=truth, max_assignments=10_000, seed=seed, ci=False).p_value
        out[code, "twfe", "wcr"] = Outcome(wcr.p_value, p_truth=wcr_t)
        out[code, "twfe", "randomization"] = Outcome(ri.p_value, p_truth=ri_t)
        cc = clean_controls_cells(sub)  # one treated: placebo variance A + B/n at the treated size, t(G_C - 1)
        out[code, "clean_controls", "placebo_t"] = Outcome(cc.p_value, cc.ci_low, cc.ci_high)
        key = path.tobytes()
        if key not in placebo_cache:
            placebo_cache[key] = _placebos(cells, path)
        pl_est = placebo_cache[key]
        est = cc.estimate
        m = len(pl_est)
        ct_p = (1 + int(np.sum(np.abs(pl_est) >= abs(est) * (1 - 1e-12)))) / (m + 1)
        h = _rank_half_width(pl_est, alpha)
        out[code, "clean_controls", "conley_taber"] = Outcome(ct_p, est - h, est + h)
        (A, B), _ = nnls(np.column_stack([np.ones_like(n_c), 1.0 / n_c]), pl_est ** 2)
        scale_c = np.sqrt(np.maximum(A + B / n_c, 1e-300))
        scale_g = float(np.sqrt(max(A + B / float(cells.n[g]), 1e-300)))
        z_pl = pl_est / scale_c
        fp_p = (1 + int(np.sum(np.abs(z_pl) >= abs(est / scale_g) * (1 - 1e-12)))) / (m + 1)
        hf = scale_g * _rank_half_width(z_pl, alpha)
        out[code, "clean_controls", "ferman_pinto"] = Outcome(fp_p, est - hf, est + hf)
    return out
