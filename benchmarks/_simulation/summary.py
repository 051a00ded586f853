"""Per-replication outcomes -> size, coverage, power and width with Monte-Carlo standard errors."""

from __future__ import annotations

from typing import Any

import numpy as np

ALPHA = 0.05
LEVEL = 1 - ALPHA


def covered(o: dict[str, float], truth: float) -> float:
    """1/0 whether the 95 % set holds the truth: the interval if computed, else non-rejection of H0: truth."""
    lo, hi = o["ci_low"], o["ci_high"]
    if not (np.isnan(lo) or np.isnan(hi)):
        return float(lo <= truth <= hi)
    if not np.isnan(o["p_truth"]):
        return float(o["p_truth"] > ALPHA)
    return float("nan")


def _rate(x: np.ndarray) -> tuple[float | None, float | None]:
    """Mean of per-replication rates and its Monte-Carlo SE (sd of the replications' values / sqrt(R))."""
    x = x[~np.isnan(x)]
    if x.size == 0:
        return None, None
    se = float(np.std(x, ddof=1) / np.sqrt(x.size)) if x.size > 1 else None
    return float(x.mean()), se


def _median_se(w: np.ndarray, seed: int = 0) -> tuple[float | None, float | None]:
    """Median width and its bootstrap Monte-Carlo SE (200 resamples of the replications)."""
    w = w[np.isfinite(w)]
    if w.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    if w.size < 2:
        return float(np.median(w)), None
    boots = [np.median(rng.choice(w, size=w.size)) for _ in range(200)]
    return float(np.median(w)), float(np.std(boots))


def completed(records: list[dict[str, Any]], placement: str, estimator: str = "twfe") -> int:
    """Replications of ``placement`` completed under every DGP (the smallest count over the DGPs)."""
    seen: dict[str, set[int]] = {}
    for r in records:
        if r["placement"] == placement and r["estimator"] == estimator:
            seen.setdefault(r["dgp"], set()).add(r["replication"])
    return min((len(v) for v in seen.values()), default=0)


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per placement x dgp x estimator x method x unit.

    ``records`` hold, per replication and scenario, a method's p-value, interval,
    p-value at the truth and the truth. Rates are per replication (the mean over
    the six municipalities for the pooled per-municipality rows), so the
    Monte-Carlo SE is the sd of the replications' values over sqrt(R). ``*_ok``
    compares with the SE of a correct method, sqrt(0.05 * 0.95 / R).
    """
    groups: dict[tuple, dict[str, dict[int, list]]] = {}
    for r in records:
        key = (r["placement"], r["dgp"], r["estimator"], r["method"], r["unit"])
        g = groups.setdefault(key, {"null": {}, "effect": {}})
        g[r["scenario"]].setdefault(r["replication"], []).append(r)
    rows = []
    for (placement, dgp, estimator, method, unit), g in groups.items():
        null = np.array([np.mean([x["p_value"] <= ALPHA for x in v]) for v in g["null"].values()], dtype=float)
        eff = list(g["effect"].values())
        power = np.array([np.mean([x["p_value"] <= ALPHA for x in v]) for v in eff], dtype=float)
        cover = np.array([np.nanmean([covered(x, x["truth"]) for x in v])
                          if any(not np.isnan(covered(x, x["truth"])) for x in v) else np.nan for v in eff], dtype=float)
        width = np.array([np.median([x["ci_high"] - x["ci_low"] for x in v]) for v in eff], dtype=float)
        size, size_se = _rate(null)
        cov, cov_se = _rate(cover)
        pw, pw_se = _rate(power)
        wd, wd_se = _median_se(width)
        R = max(len(g["null"]), len(eff))
        se0 = float(np.sqrt(ALPHA * LEVEL / R)) if R else float("nan")
        rows.append({
            "placement": placement, "dgp": dgp, "estimator": estimator, "method": method, "unit": unit,
            "replications": R,
            "size": size, "size_mcse": size_se, "coverage": cov, "coverage_mcse": cov_se,
            "power": pw, "power_mcse": pw_se, "median_width": wd, "median_width_mcse": wd_se,
            "size_within_2mcse": None if size is None else bool(abs(size - ALPHA) <= 2 * se0),
            "coverage_within_2mcse": None if cov is None else bool(abs(cov - LEVEL) <= 2 * se0),
        })
    return rows
