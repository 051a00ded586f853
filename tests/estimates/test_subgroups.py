"""Subgroup estimates of the pipeline (cells of a filtered GROUP BY) equal the general path and pyfixest."""

from __future__ import annotations

import pytest

from pipeline import db
from pipeline.estimates import monthly_cells
from pipeline.readers import SUBGROUP_COLUMNS
from pipeline.did.twfe import twfe, twfe_cells


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.mark.parametrize(("dim", "level"), [("sex", "F"), ("age_band", "50-64")])
def test_subgroup_cells_equal_general_path_and_pyfixest(loaded_small, dim: str, level: str) -> None:
    pf = pytest.importorskip("pyfixest")
    path, _, _ = loaded_small
    expr = SUBGROUP_COLUMNS[dim]
    with db.connect(path, read_only=True) as con:
        levels = [v for (v,) in con.execute(f"select distinct {expr} from panel.cohort c").fetchall()]
        assert level in levels, levels
        cells = monthly_cells(con, "amount_eur", where=f"{expr} = ?", params=[level])
        panel = db.query_frame(con, f"""
            select pm.person_key, pm.month, pm.kuntanumero, pm.in_pilot::double as d, pm.amount_eur::double as y
            from panel.person_month pm join panel.cohort c using (person_key) where {expr} = ?""", [level])
    aggregated = twfe_cells(cells)
    general = twfe(panel, unit="person_key", time="month", outcome="y", treatment="d", cluster="kuntanumero",
                   path="general")
    assert general.path == "general"
    fit = pf.feols("y ~ d | person_key + month", data=panel.to_pandas(), vcov={"CRV1": "kuntanumero"})
    for other in (general.estimate, fit.coef()["d"]):
        assert rel(aggregated.estimate, other) < 1e-10
    for other in (general.std_error, fit.se()["d"]):
        assert rel(aggregated.std_error, other) < 1e-10
    assert aggregated.n_obs == panel.height
