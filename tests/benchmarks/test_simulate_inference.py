"""Smoke test of benchmarks/simulate_inference.py (3 replications, few draws), and the public API's
aggregated path giving the numbers of the cell-level functions the simulation calls."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import simulate_inference  # noqa: E402
from benchmarks._simulation import dgp  # noqa: E402
from benchmarks._simulation.render import render  # noqa: E402
from pipeline import did  # noqa: E402
from pipeline.did.cells import Cells  # noqa: E402
from pipeline.did.clean_controls import clean_controls_cells  # noqa: E402
from pipeline.did.inference.bootstrap import wild_cluster_bootstrap  # noqa: E402
from pipeline.did.twfe import twfe_cells  # noqa: E402


@pytest.mark.slow
def test_three_replications_write_both_files(tmp_path: Path) -> None:
    js, md = tmp_path / "sim.json", tmp_path / "sim.md"
    assert simulate_inference.main([
        "--replications", "3", "--random-replications", "1", "--sdid-replications", "1", "--chunk", "3",
        "--bootstrap-draws", "19", "--randomization-draws", "19", "--sdid-placebo", "3", "--sdid-draws", "4",
        "--json", str(js), "--out", str(md)]) == 0
    data = json.loads(js.read_text(encoding="utf-8"))
    assert data["complete"] and data["replications"]["actual"] == 3 and data["replications"]["random"] == 1
    keys = {(r["placement"], r["dgp"], r["estimator"], r["method"]) for r in data["results"]}
    for placement in ("actual", "random"):
        for d in dgp.DGPS:
            for est, meth, _ in simulate_inference.METHODS:
                if est == "sdid" and placement == "random" or meth == "honest_rm_mbar0":
                    continue
                assert (placement, d.name, est, meth) in keys
    assert md.read_text(encoding="utf-8") == render(data)


def _person_panel(cells: Cells) -> did.Panel:
    """Persons nested in municipalities, each with its municipality's mean: the same cell sums."""
    g = np.repeat(np.arange(cells.n_clusters), cells.n.astype(int))
    person = np.arange(g.size)
    T = cells.n_periods
    frame = pl.DataFrame({
        "person": np.repeat(person, T), "month": np.tile(np.arange(T), g.size),
        "kunta": np.repeat(cells.clusters[g], T),
        "y": (cells.sums / cells.n[:, None])[g].ravel(), "d": cells.treat[g].ravel().astype(int),
    })
    return did.Panel(frame, unit="person", time="month", cluster="kunta", treatment="d")


def test_cell_functions_give_the_public_api_numbers() -> None:
    codes, _, pop = dgp.municipalities()
    order = np.argsort(codes)  # the panel's clusters come in sorted order: so do the bootstrap weights
    codes, pop = codes[order], pop[order]
    n = dgp.sizes(pop, 600)
    cells = Cells(codes, np.arange(dgp.T), n, dgp.draw_sums(np.random.default_rng(3), n, dgp.DGPS[0]),
                  dgp.actual_treatment(codes))
    panel = _person_panel(cells)
    fit = did.twfe(panel, "y")
    tw = twfe_cells(cells)
    assert fit.path == "aggregated"
    assert fit.result.estimate == pytest.approx(tw.estimate, rel=1e-8)
    assert fit.result.p_value == pytest.approx(tw.p_value, rel=1e-6)
    assert fit.wild_bootstrap(draws=99, seed=5).p_value == wild_cluster_bootstrap(cells, draws=99, seed=5).p_value
    cc = did.clean_controls(panel, "y")
    direct = clean_controls_cells(cells)
    assert cc.result.estimate == pytest.approx(direct.estimate, rel=1e-8)
    assert cc.result.p_value == pytest.approx(direct.p_value, rel=1e-6)
