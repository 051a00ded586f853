"""Few-cluster inference for the two-way fixed-effects difference in differences.

All procedures work on :class:`pipeline.did.cells.Cells` (cluster x period
sums of a balanced panel) and are exact functions of them.  The p-values mean:

``cv1`` (``TwfeFit.p_value``)
    CRV1 cluster-robust t statistic referred to t(G-1).  Analytic; over-rejects
    when few clusters are treated.
``wild_cluster_bootstrap(..., restricted=True)`` (WCR)
    Share of wild-cluster-bootstrap statistics, generated with the null imposed,
    whose absolute value is at least the observed one (two-sided, symmetric).
    Its confidence interval is the set of effects not rejected (test inversion).
``wild_cluster_bootstrap(..., restricted=False)`` (WCU)
    Same statistic, bootstrap DGP from the unrestricted fit, t* centred at the
    estimate; interval is percentile-t.
``randomization_test``
    Share of all admissible reassignments of the design's treatment paths to
    distinct clusters (exact enumeration, or a seeded sample plus the observed
    assignment) whose |t| (CRV1) is at least the observed |t|.  Exact under the
    sharp null of no effect for anyone if the assignment was as-if random.
``general`` (the general path), ``clean_controls``, ``event_bootstrap``, ``synthetic``
    The same procedures for the demeaned rows of any panel, for the clean-control
    estimator, as sup-t bands for an event study, and randomization for synthetic
    DiD; the public entry points are the methods of the fits of :mod:`pipeline.did`.
``placebo_size``
    Empirical rejection rates of all the above on never-treated clusters given
    fake treatments: the size each method actually has in this design.
"""

from __future__ import annotations

from pipeline.did.inference._twfe_algebra import TwfeFit, twfe_fit
from pipeline.did.inference.bootstrap import BootstrapResult, wild_cluster_bootstrap
from pipeline.did.inference.placebo import placebo_size
from pipeline.did.inference.randomization import RandomizationResult, randomization_test

__all__ = [
    "BootstrapResult",
    "RandomizationResult",
    "TwfeFit",
    "placebo_size",
    "randomization_test",
    "twfe_fit",
    "wild_cluster_bootstrap",
]
