"""Statistical disclosure control of the published results: primary, secondary and dominance rules.

Nothing leaves a secure environment (Statistics Finland's FIONA, Findata) without an
output check. Every published table is decided here, by one set of rules, before it
is written to ``results.*``; the report, the Prefect artifacts, the terminal table and
the export bundle read those decisions and never decide again.

Primary suppression
    A row is withheld when the persons that *carry* it are fewer than
    ``min_cell_persons``: the treated side of the comparison
    (``n_treated_persons``: the pilot cohort members in the row's treated
    municipalities, and for a per-municipality row that municipality's alone), not the
    pooled count of everyone in the regression, which the comparison municipalities'
    persons would inflate. A row without a treated count falls back to ``n_persons``.

Secondary suppression
    No withheld value may be recoverable from what is published:

    * *complements within a subgroup family* (``sex=1``/``sex=2``, ``municipality=…``):
      the whole-cohort estimate is a weighted combination of a family's levels, so
      when one level of a family is withheld, the smallest other level is withheld
      too (for each outcome and estimator);
    * *the headline minus a leave-one-out estimate*: when a municipality's own row is
      withheld, the headline without that municipality
      (``results.robustness``, variant ``without=KKK``) is withheld as well;
    * *the cost view's sums*: observed = counterfactual + effect, so its euro sums are
      withheld together.

Dominance
    A euro sum is withheld when its ``dominance_n`` largest contributors hold more
    than ``dominance_k`` of it (the (n, k) rule): one large recipient must not be
    recoverable from a published total.

Every decision carries its reason in ``suppression_rule`` (``primary``, ``complement``,
``leave_one_out``, ``dominance``), so an output checker can see which rule held what.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

PRIMARY, COMPLEMENT, LEAVE_ONE_OUT, DOMINANCE = "primary", "complement", "leave_one_out", "dominance"
RULES: tuple[str, ...] = (PRIMARY, COMPLEMENT, LEAVE_ONE_OUT, DOMINANCE)
"""The rule codes of ``suppression_rule``, in the order they are applied."""


@dataclass(frozen=True)
class DisclosureRules:
    """The thresholds of the rules (from ``config.disclosure``)."""

    min_cell_persons: int = 5
    dominance_n: int = 1
    dominance_k: float = 0.5

    @classmethod
    def from_config(cls, disclosure: object) -> DisclosureRules:
        """The rules of a ``DisclosureSettings`` (or anything with the same attributes)."""
        return cls(min_cell_persons=int(getattr(disclosure, "min_cell_persons", 5)),
                   dominance_n=int(getattr(disclosure, "dominance_n", 1)),
                   dominance_k=float(getattr(disclosure, "dominance_k", 0.5)))


def carriers(frame: pl.DataFrame) -> pl.Expr:
    """The persons carrying each row: the treated side when known, else everyone in it."""
    if "n_treated_persons" in frame.columns:
        return pl.coalesce(pl.col("n_treated_persons"), pl.col("n_persons"))
    return pl.col("n_persons")


def mark_primary(frame: pl.DataFrame, rules: DisclosureRules) -> pl.DataFrame:
    """``suppressed`` / ``suppression_rule`` set for rows carried by fewer than ``min_cell_persons`` persons."""
    small = carriers(frame).is_null() | (carriers(frame) < rules.min_cell_persons)
    return _mark(frame, small, PRIMARY)


def mark_complements(frame: pl.DataFrame, *, keys: tuple[str, ...] = ("outcome", "estimator")) -> pl.DataFrame:
    """In every subgroup family with exactly one withheld level, also withhold its smallest published level."""
    if "subgroup" not in frame.columns or frame.height == 0:
        return frame
    family = pl.col("subgroup").str.split("=").list.first()
    is_level = pl.col("subgroup").str.contains("=")
    group = [*keys, "_family"]
    work = frame.with_columns(family.alias("_family"), is_level.alias("_level"),
                              carriers(frame).alias("_carriers"), pl.int_range(pl.len()).alias("_row"))
    levels = work.filter(pl.col("_level"))
    withheld = levels.group_by(group).agg(pl.col("suppressed").sum().alias("_withheld"),
                                          pl.len().alias("_levels"))
    candidates = (levels.join(withheld, on=group)
                  .filter((pl.col("_withheld") == 1) & (pl.col("_levels") > 1) & ~pl.col("suppressed"))
                  .sort("_carriers", "subgroup")
                  .group_by(group, maintain_order=True).first())
    hit = work["_row"].is_in(candidates["_row"].to_list())
    return _mark(frame, hit, COMPLEMENT)


def mark_leave_one_out(robustness: pl.DataFrame, estimates: pl.DataFrame) -> pl.DataFrame:
    """Withhold the headline without municipality KKK wherever KKK's own row of ``estimates`` is withheld."""
    if robustness.height == 0 or "variant" not in robustness.columns or estimates.height == 0:
        return robustness
    hidden = (estimates.filter(pl.col("suppressed") & pl.col("subgroup").str.starts_with("municipality="))
              .select("outcome", pl.col("subgroup").str.replace("municipality=", "without=").alias("variant"))
              .unique())
    if hidden.height == 0:
        return robustness
    keyed = robustness.with_columns(pl.int_range(pl.len()).alias("_row"))
    rows = keyed.join(hidden, on=["outcome", "variant"])["_row"]
    return _mark(robustness, keyed["_row"].is_in(rows.to_list()), LEAVE_ONE_OUT)


def mark_dominance(frame: pl.DataFrame, rules: DisclosureRules, *, share: str = "largest_share") -> pl.DataFrame:
    """Withhold rows whose ``dominance_n`` largest contributors hold more than ``dominance_k`` of the euro sum
    (``share``: that share, computed where the persons are known)."""
    if share not in frame.columns:
        return frame
    return _mark(frame, pl.col(share).is_not_null() & (pl.col(share) > rules.dominance_k), DOMINANCE)


def withhold(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """The numbers of every withheld row set to NULL (the keys, counts of the rule and flags stay)."""
    present = [c for c in columns if c in frame.columns]
    return frame.with_columns([pl.when(pl.col("suppressed")).then(None).otherwise(pl.col(c)).alias(c)
                               for c in present])


def _mark(frame: pl.DataFrame, condition: pl.Expr | pl.Series, rule: str) -> pl.DataFrame:
    """Set ``suppressed`` where ``condition`` holds, recording ``rule`` as the first rule that held the row."""
    if "suppressed" not in frame.columns:
        frame = frame.with_columns(pl.lit(False).alias("suppressed"), pl.lit(None, pl.String).alias("suppression_rule"))
    elif "suppression_rule" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("suppression_rule"))
    cond = condition if isinstance(condition, pl.Expr) else pl.lit(condition)
    new = cond.fill_null(False) & ~pl.col("suppressed").fill_null(False)
    return frame.with_columns(
        pl.when(new).then(pl.lit(rule)).otherwise(pl.col("suppression_rule")).alias("suppression_rule"),
        (pl.col("suppressed").fill_null(False) | cond.fill_null(False)).alias("suppressed"),
    )
