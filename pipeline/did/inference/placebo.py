"""Placebo size: how often each inference method rejects a true null in this design.

Pass the cells of the never-treated (comparison) clusters only.  Each replication
gives the design's treatment paths to randomly chosen distinct comparison
clusters (seeded), so the true effect is zero, and records whether each method
rejects H0: beta = 0 at ``alpha``.  Methods:

``cv1``            CRV1 t against t(G-1)
``cv3``            leave-one-cluster-out jackknife se, sqrt((G-1)/G sum (b_(-g) - mean b)^2), t(G-1)
``wcr_webb``       restricted wild cluster bootstrap, Webb weights
``wcu_webb``       unrestricted wild cluster bootstrap, Webb weights
``randomization``  randomization test (sampled assignments, or all if few)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from pipeline.did.inference._twfe_algebra import batch_beta_t, t_pvalue
from pipeline.did.inference.bootstrap import bootstrap_p_values
from pipeline.did.inference.randomization import make_design, randomization_p_values, sample_assignments

if TYPE_CHECKING:  # the estimation package is imported lazily: it may be mid-edit
    from pipeline.did.cells import Cells

METHODS: tuple[str, ...] = ("cv1", "cv3", "wcr_webb", "wcu_webb", "randomization")


def placebo_treatments(n_clusters: int, paths: Sequence[np.ndarray], replications: int, seed: int) -> np.ndarray:
    """(R, G, T) placebo treatments: the design's paths on random distinct clusters."""
    design = make_design(paths, len(paths[0]))
    if int(design.counts.sum()) >= n_clusters:
        raise ValueError(
            f"placebo_size: expected more comparison clusters than treated paths, "
            f"found {n_clusters} clusters for {int(design.counts.sum())} paths"
        )
    idx = next(sample_assignments(n_clusters, design, replications, seed, chunk=max(replications, 1)))
    treat = np.zeros((replications, n_clusters, design.paths.shape[1]))
    slot_paths = design.paths[design.slot_path]  # (M, T)
    rows = np.arange(replications)[:, None]
    treat[rows, idx] = slot_paths[None, :, :]
    return treat


def jackknife_p_values(sums: np.ndarray, n: np.ndarray, treat: np.ndarray) -> np.ndarray:
    """CV3 (leave-one-cluster-out) t(G-1) p-values of H0: beta = 0 for a batch of treatments (R, G, T)."""
    G = sums.shape[0]
    beta, _ = batch_beta_t(sums, n, treat)
    loo = np.empty((treat.shape[0], G))
    for g in range(G):
        keep = np.arange(G) != g
        with np.errstate(divide="ignore", invalid="ignore"):
            loo[:, g], _ = batch_beta_t(sums[keep], n[keep], treat[:, keep])
    se = np.sqrt((G - 1) / G * np.sum((loo - loo.mean(axis=1, keepdims=True)) ** 2, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return t_pvalue(beta / se, G - 1)


def placebo_size(
    cells: Cells,
    paths: Sequence[np.ndarray],
    *,
    replications: int = 200,
    bootstrap_draws: int = 999,
    ri_draws: int = 999,
    seed: int = 0,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """Rejection rates of H0: beta = 0 under placebo treatments of comparison clusters.

    Returns
    -------
    polars.DataFrame with one row per method and columns
    ``method, replications, rejections, rejection_rate, alpha``.
    """
    if replications < 1:
        raise ValueError(f"placebo_size: replications must be >= 1, got {replications}")
    seeds = np.random.SeedSequence(seed).generate_state(3 + 3 * replications)
    G = cells.n_clusters
    sums, n = np.asarray(cells.sums, dtype=float), np.asarray(cells.n, dtype=float)
    treat = placebo_treatments(G, paths, replications, int(seeds[0]))
    _, t = batch_beta_t(sums, n, treat)
    p = {
        "cv1": t_pvalue(t, G - 1),
        "cv3": jackknife_p_values(sums, n, treat),
        # replication r draws with seeds[3 + 3r], seeds[4 + 3r] and seeds[5 + 3r]: WCR, WCU, randomization
        "wcr_webb": bootstrap_p_values(cells, treat, seeds[3::3], draws=bootstrap_draws),
        "wcu_webb": bootstrap_p_values(cells, treat, seeds[4::3], draws=bootstrap_draws, restricted=False),
        "randomization": randomization_p_values(cells, paths, treat, seeds[5::3], draws=ri_draws,
                                                max_assignments=ri_draws),
    }
    rejections = [int(np.sum(p[m] <= alpha)) for m in METHODS]
    return pl.DataFrame(
        {
            "method": list(METHODS),
            "replications": [replications] * len(METHODS),
            "rejections": rejections,
            "rejection_rate": [k / replications for k in rejections],
            "alpha": [alpha] * len(METHODS),
        }
    )
