"""Cluster x time sums of a balanced panel: the data the aggregated path estimates from.

When every unit is observed in every period, units are nested in clusters, and
treatment is constant within cluster x time, two-way fixed-effects regressions,
their CRV1 standard errors, the wild cluster bootstrap and randomization
inference are exact functions of the sums of the outcome by cluster and period
and of the number of units per cluster (see the package docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cells:
    """Sufficient statistics of a balanced panel with units nested in clusters.

    Attributes
    ----------
    clusters : (G,) array of cluster labels
    times : (T,) array of period labels, sorted
    n : (G,) number of units in each cluster (each observed in every period)
    sums : (G, T) sum of the outcome over the cluster's units in each period
    treat : (G, T) treatment of the cluster in each period (the same for all its units)
    """

    clusters: np.ndarray
    times: np.ndarray
    n: np.ndarray
    sums: np.ndarray
    treat: np.ndarray

    def __post_init__(self) -> None:
        G, T = self.sums.shape
        if self.treat.shape != (G, T) or self.n.shape != (G,) or len(self.clusters) != G or len(self.times) != T:
            raise ValueError("Cells: shapes of clusters, times, n, sums and treat disagree")
        if np.any(self.n <= 0):
            raise ValueError("Cells: every cluster needs at least one unit")

    @property
    def n_clusters(self) -> int:
        """G, the number of clusters."""
        return int(self.sums.shape[0])

    @property
    def n_periods(self) -> int:
        """T, the number of periods."""
        return int(self.sums.shape[1])

    @property
    def n_obs(self) -> int:
        """N = (units) x T observations of the panel."""
        return int(self.n.sum()) * self.n_periods

    @property
    def treated_clusters(self) -> np.ndarray:
        """Boolean (G,) mask of clusters treated in some period."""
        return np.any(self.treat != 0, axis=1)

    def subset(self, mask: np.ndarray) -> Cells:
        """The cells of the clusters selected by a boolean mask."""
        return Cells(self.clusters[mask], self.times, self.n[mask], self.sums[mask], self.treat[mask])

    def with_treatment(self, treat: np.ndarray) -> Cells:
        """The same sums under another treatment assignment."""
        return Cells(self.clusters, self.times, self.n, self.sums, np.asarray(treat, dtype=float))

    def minus_effect(self, beta: float) -> Cells:
        """Sums of y - beta * D (imposing a constant effect beta)."""
        return Cells(self.clusters, self.times, self.n, self.sums - beta * self.n[:, None] * self.treat, self.treat)
