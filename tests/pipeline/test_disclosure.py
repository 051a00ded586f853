"""Disclosure control on planted small cells: primary by the treated side, secondary so that no withheld value
can be recomputed from any published pair or total, and the dominance rule for euro sums."""

from __future__ import annotations

import itertools

import polars as pl
import pytest

from pipeline.disclosure import (
    DisclosureRules,
    mark_complements,
    mark_dominance,
    mark_leave_one_out,
    mark_primary,
    withhold,
)

RULES = DisclosureRules(min_cell_persons=10, dominance_n=1, dominance_k=0.5)
MUNICIPALITIES = {"211": 40, "297": 120, "320": 7, "680": 30, "837": 300}
"""Treated cohort members by pilot municipality: Kemijärvi (320) has 7, fewer than the threshold."""


def _estimates() -> pl.DataFrame:
    """A whole-cohort row and two subgroup families whose levels average (weighted by treated persons) to it,
    so that a withheld level is exactly recoverable from the headline and the other levels if published."""
    rows = []
    effect = {"211": -0.02, "297": -0.05, "320": -0.30, "680": 0.01, "837": -0.04}
    sex = {"1": (380, -0.03), "2": (117, -0.06)}
    small_sex = {"1": (490, -0.04), "2": (7, 0.50)}  # a family with a small complement
    for outcome, sexes in (("received", sex), ("amount_eur", small_sex)):
        total = sum(MUNICIPALITIES.values())
        headline = sum(MUNICIPALITIES[g] * effect[g] for g in MUNICIPALITIES) / total
        rows.append({"outcome": outcome, "estimator": "twfe", "subgroup": "all", "estimate": headline,
                     "n_persons": 20_000, "n_treated_persons": total})
        for g, n in MUNICIPALITIES.items():
            rows.append({"outcome": outcome, "estimator": "twfe", "subgroup": f"municipality={g}",
                         "estimate": effect[g], "n_persons": 19_000 + n, "n_treated_persons": n})
        for level, (n, e) in sexes.items():
            rows.append({"outcome": outcome, "estimator": "twfe", "subgroup": f"sex={level}", "estimate": e,
                         "n_persons": 10_000, "n_treated_persons": n})
    return pl.DataFrame(rows)


def _decide(frame: pl.DataFrame) -> pl.DataFrame:
    return withhold(mark_complements(mark_primary(frame, RULES)), ("estimate",))


def test_primary_suppression_counts_the_treated_side_not_the_pooled_regression() -> None:
    out = _decide(_estimates())
    kemijarvi = out.filter(pl.col("subgroup") == "municipality=320")
    assert kemijarvi["n_persons"].min() > 10_000          # the pooled count would never have suppressed it
    assert kemijarvi["suppressed"].all() and kemijarvi["estimate"].is_null().all()
    assert set(kemijarvi["suppression_rule"]) == {"primary"}


def _recoverable(out: pl.DataFrame, outcome: str, family: str) -> list[str]:
    """Every withheld level that the headline and the published levels of its family give back exactly."""
    rows = out.filter(pl.col("outcome") == outcome)
    head = rows.filter(pl.col("subgroup") == "all").row(0, named=True)
    levels = rows.filter(pl.col("subgroup").str.starts_with(f"{family}="))
    hidden = levels.filter(pl.col("suppressed"))
    shown = levels.filter(~pl.col("suppressed"))
    found = []
    if head["estimate"] is None:
        return found
    # try every published subset of the family with the headline: one unknown is solvable, two are not
    for k in range(len(shown) + 1):
        for subset in itertools.combinations(shown.iter_rows(named=True), k):
            rest = head["n_treated_persons"] - sum(r["n_treated_persons"] for r in subset)
            unknown = [r for r in hidden.iter_rows(named=True)]
            if len(subset) == len(shown) and len(unknown) == 1 and rest == unknown[0]["n_treated_persons"]:
                value = (head["estimate"] * head["n_treated_persons"]
                         - sum(r["estimate"] * r["n_treated_persons"] for r in subset)) / rest
                found.append(f"{unknown[0]['subgroup']} = {value:.4f}")
    return found


@pytest.mark.parametrize(("outcome", "family"), [("received", "municipality"), ("amount_eur", "sex"),
                                                 ("amount_eur", "municipality"), ("received", "sex")])
def test_no_withheld_value_can_be_recomputed_from_published_ones(outcome: str, family: str) -> None:
    primary_only = withhold(mark_primary(_estimates(), RULES), ("estimate",))
    decided = _decide(_estimates())
    if decided.filter((pl.col("outcome") == outcome) & pl.col("subgroup").str.starts_with(f"{family}=")
                      & pl.col("suppressed")).height:
        # the planted small cells are recoverable under primary suppression alone...
        assert _recoverable(primary_only, outcome, family)
    # ...and none is once the secondary rule has run
    assert _recoverable(decided, outcome, family) == []


def test_complement_withholds_the_smallest_other_level_only() -> None:
    out = _decide(_estimates()).filter(pl.col("outcome") == "amount_eur")
    by = dict(zip(out["subgroup"], zip(out["suppressed"], out["suppression_rule"], strict=True), strict=True))
    assert by["sex=2"] == (True, "primary")
    assert by["sex=1"] == (True, "complement")
    assert by["municipality=320"] == (True, "primary")
    assert by["municipality=680"] == (True, "complement")     # 30 treated persons: the smallest published
    assert by["all"] == (False, None)
    assert not any(by[f"municipality={g}"][0] for g in ("211", "297", "837"))


def test_leave_one_out_of_a_withheld_municipality_is_withheld() -> None:
    estimates = _decide(_estimates())
    robustness = pl.DataFrame([
        {"outcome": o, "analysis": "leave_one_out_treated", "estimator": "twfe", "variant": f"without={g}",
         "estimate": -0.03, "n_persons": 20_000 - n, "n_treated_persons": 497 - n}
        for o in ("received", "amount_eur") for g, n in MUNICIPALITIES.items()])
    out = mark_leave_one_out(mark_primary(robustness, RULES), estimates)
    withheld = set(out.filter(pl.col("suppressed")).select("outcome", "variant").iter_rows())
    assert withheld == {(o, "without=320") for o in ("received", "amount_eur")} | {("amount_eur", "without=680")} \
        | {("received", "without=680")}
    assert set(out.filter(pl.col("suppressed"))["suppression_rule"]) == {"leave_one_out"}


def test_dominance_withholds_a_euro_sum_held_by_one_recipient() -> None:
    cost = pl.DataFrame({"outcome": ["amount_eur", "amount_eur"], "estimator": ["twfe", "clean_controls"],
                         "observed_total": [1_000_000.0, 1_000_000.0], "n_persons": [400, 400],
                         "largest_share": [0.62, 0.31]})
    out = withhold(mark_dominance(mark_primary(cost, RULES), RULES), ("observed_total",))
    assert out["suppressed"].to_list() == [True, False]
    assert out["suppression_rule"].to_list() == ["dominance", None]
    assert out["observed_total"].to_list() == [None, 1_000_000.0]
