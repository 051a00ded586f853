"""The one result protocol of the estimators: :class:`Fit`, and :class:`InferenceResult` for every inference.

Every estimator of :mod:`pipeline.did` returns a :class:`Fit`: ``tidy()`` gives a
polars frame with the columns of :data:`TIDY_COLUMNS` (one row per term),
``summary()`` a text table, and the inference procedures are methods --
``cv3()``, ``wild_bootstrap(...)``, ``randomization_test(...)`` -- each returning
an :class:`InferenceResult`. A procedure that is not valid for an estimator
raises :class:`InferenceNotAvailable` naming the ones that are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl

from pipeline.did.data import Panel

TIDY_COLUMNS: tuple[str, ...] = (
    "term", "estimate", "std_error", "statistic", "df", "p_value", "ci_low", "ci_high",
    "n_obs", "n_units", "n_clusters", "n_treated_clusters", "path",
)
"""The columns of every ``Fit.tidy()``, in order."""

_INT_COLUMNS = ("df", "n_obs", "n_units", "n_clusters", "n_treated_clusters")

BootstrapWeights = Literal["webb", "rademacher"]
"""Wild bootstrap weights: Webb's six-point or Rademacher (enumerated when 2^G <= draws)."""


class InferenceNotAvailable(NotImplementedError):
    """The estimator has no such inference procedure (the message names those it has)."""


@dataclass(frozen=True)
class InferenceResult:
    """One inference procedure's answer for a fit.

    ``statistic`` is the observed test statistic of the procedure (t, F or the
    estimate itself, as ``method`` says), ``draws`` the bootstrap draws or
    assignments used, ``exact`` whether they were all of them (enumeration).
    Event-study procedures also give a per-event-time ``table``.
    """

    method: str
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    draws: int | None
    exact: bool
    table: pl.DataFrame | None = None

    def tidy(self) -> pl.DataFrame:
        """One row: method, statistic, p_value, ci_low, ci_high, draws, exact."""
        return pl.DataFrame([{k: getattr(self, k) for k in
                              ("method", "statistic", "p_value", "ci_low", "ci_high", "draws", "exact")}],
                            schema={"method": pl.String(), "statistic": pl.Float64(), "p_value": pl.Float64(),
                                    "ci_low": pl.Float64(), "ci_high": pl.Float64(), "draws": pl.Int64(),
                                    "exact": pl.Boolean()})


def tidy_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows with exactly :data:`TIDY_COLUMNS`, typed."""
    schema = {c: pl.Int64() if c in _INT_COLUMNS else pl.String() if c in ("term", "path") else pl.Float64()
              for c in TIDY_COLUMNS}
    clean = [{c: (None if isinstance(r.get(c), float) and c in _INT_COLUMNS and not np.isfinite(r[c]) else r.get(c))
              for c in TIDY_COLUMNS} for r in rows]
    return pl.DataFrame(clean, schema=schema)


class Fit:
    """What every estimator returns: the estimate(s), how they were computed, and the inference methods.

    Attributes
    ----------
    estimator : name of the estimator (``"twfe"``, ``"event_study"``, ...)
    outcome : the outcome column
    result : the estimator's own result object (all its numbers)
    path : ``"aggregated"`` (cluster x period sums) or ``"general"``
    fallback_reason : why the general path ran when the aggregated one was possible in principle, else None
    """

    estimator: ClassVar[str] = "fit"
    inference: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, outcome: str, result: Any, path: str, fallback_reason: str | None, alpha: float) -> None:
        self.outcome = outcome
        self.result = result
        self.path = path
        self.fallback_reason = fallback_reason
        self.alpha = alpha

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.estimator} of {self.outcome!r}, path={self.path!r}>"

    def _rows(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def tidy(self) -> pl.DataFrame:
        """One row per term with :data:`TIDY_COLUMNS`."""
        return tidy_frame(self._rows())

    def summary(self) -> str:
        """A plain-text table of the terms, with the path and (on fallback) why."""
        t = self.tidy()
        head = f"{self.estimator} of {self.outcome}: {t['n_obs'][0]} obs, {t['n_units'][0]} units, " \
               f"{t['n_clusters'][0]} clusters ({t['n_treated_clusters'][0]} treated); path {self.path}"
        if self.fallback_reason:
            head += f" ({self.fallback_reason})"
        lines = [head, f"{'term':<20}{'estimate':>12}{'std.error':>12}{'statistic':>11}{'p':>11}"
                       f"{'ci low':>12}{'ci high':>12}"]
        for r in t.iter_rows(named=True):
            lines.append(f"{r['term']:<20}{_num(r['estimate']):>12}{_num(r['std_error']):>12}"
                         f"{_num(r['statistic'], 3):>11}{_num(r['p_value'], 4):>11}"
                         f"{_num(r['ci_low']):>12}{_num(r['ci_high']):>12}")
        return "\n".join(lines)

    def _unavailable(self, method: str) -> InferenceNotAvailable:
        return InferenceNotAvailable(f"{self.estimator}: {method} is not available on the {self.path} path; "
                                     f"available: {', '.join(self.inference) or 'none'}")

    def cv3(self) -> InferenceResult:
        """Cluster-jackknife (CV3J) standard error: t statistic, t p-value and interval."""
        raise self._unavailable("cv3")

    def wild_bootstrap(self, *, restricted: bool = True, weights: BootstrapWeights = "webb", draws: int = 9_999,
                       seed: int = 0, null: float = 0.0) -> InferenceResult:
        """Wild cluster bootstrap-t (restricted: null imposed, interval by test inversion; else percentile-t)."""
        raise self._unavailable("wild_bootstrap")

    def randomization_test(self, assignments: Any = "design", *, draws: int | None = None, seed: int = 0,
                           null: float = 0.0, max_assignments: int | None = None) -> InferenceResult:
        """Randomization inference over the design's assignments (or explicit ones), interval by test inversion."""
        raise self._unavailable("randomization_test")


def _num(x: Any, digits: int = 6) -> str:
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}g}"


def check_weights(weights: str) -> None:
    """Validate the wild bootstrap's ``weights`` at the boundary."""
    if weights not in ("webb", "rademacher"):
        raise ValueError(f"weights: expected 'webb' or 'rademacher', found {weights!r}")


def check_draws(draws: int | None, *, name: str = "draws") -> None:
    """Validate a number of draws at the boundary."""
    if draws is not None and (not isinstance(draws, (int, np.integer)) or draws < 1):
        raise ValueError(f"{name}: expected a positive integer, found {draws!r}")


def check_panel(panel: Any, estimator: str) -> Panel:
    """The panel, if it is a :class:`~pipeline.did.data.Panel`; raise TypeError otherwise."""
    if not isinstance(panel, Panel):
        raise TypeError(f"{estimator}: expected a pipeline.did.Panel, found {type(panel).__name__}")
    return panel


def codes(df: pl.DataFrame, *columns: str) -> list[np.ndarray]:
    """0-based dense codes of each column, in sorted order of its values."""
    return [(df[c].rank("dense").cast(pl.Int64) - 1).to_numpy() for c in columns]


def bootstrap_result(res: Any) -> InferenceResult:
    """The :class:`InferenceResult` of a wild bootstrap."""
    kind = "restricted" if res.restricted else "unrestricted"
    return InferenceResult(f"wild_bootstrap_{kind}_{res.weights}", float(res.t_stat), float(res.p_value),
                           float(res.ci_low), float(res.ci_high), int(res.draws), bool(res.exact_enumeration))


def randomization_result(res: Any, statistic: str = "t") -> InferenceResult:
    """The :class:`InferenceResult` of a randomization test (``statistic``: what |.| is compared)."""
    return InferenceResult(f"randomization_{statistic}", float(res.t_stat), float(res.p_value), float(res.ci_low),
                           float(res.ci_high), int(res.n_assignments), bool(res.exact))
