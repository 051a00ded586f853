"""Panels: the cohort of truth.json, a balanced person-month panel, unique keys, schedule as configuration."""

from __future__ import annotations

import json

from pipeline import db
from pipeline.panels import MODELS, build_panels
from schemas.config import EvaluationConfig


def test_cohort_size_equals_truth(loaded_small) -> None:
    path, truth, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        by_muni = dict(con.execute("select baseline_kuntanumero, count(*) from panel.cohort group by 1").fetchall())
    assert sum(by_muni.values()) == truth["cohort_size"]
    assert by_muni == {k: v for k, v in truth["cohort_by_municipality"].items() if v}


def test_person_month_is_cohort_times_months(loaded_small) -> None:
    path, truth, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        rows = con.execute("select count(*) from panel.person_month").fetchall()[0][0]
        months = con.execute("select count(distinct month) from panel.person_month").fetchall()[0][0]
    assert months == len(truth["months"])
    assert rows == truth["cohort_size"] * months


def test_unique_keys(loaded_small) -> None:
    path, _, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        for model in MODELS:
            key = ", ".join(model.key)
            n, d = con.execute(f"select count(*), count(distinct ({key})) from {model.table}").fetchall()[0]
            assert n == d, model.table


def test_tornio_leaves_after_2018(loaded_small) -> None:
    path, _, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        months = con.execute("select min(month), max(month), count(distinct month) from panel.person_month "
                             "where kuntanumero = '851' and in_pilot = 1").fetchall()[0]
    assert (str(months[0]), str(months[1]), months[2]) == ("2018-01-01", "2018-12-01", 12)


def test_small_cells_are_suppressed(loaded_small) -> None:
    path, _, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        bad = con.execute("select count(*) from panel.municipality_month where persons < 5 "
                          "or (suppressed and received is not null)").fetchall()[0][0]
    assert bad == 0


def test_schedule_change_changes_in_pilot_and_nothing_else(loaded_small, tmp_path) -> None:
    import shutil

    path, _, _ = loaded_small
    copy = tmp_path / "copy.duckdb"
    shutil.copy(path, copy)
    moved = EvaluationConfig(pilot_schedule={"837": {"start": "2017-11", "end": "2019-12"}})
    query = "select * exclude (in_pilot, event_time) from panel.person_month order by person_key, month"
    with db.connect(copy) as con:
        before = con.execute(query).fetchall()
        pilot_before = con.execute("select count(*) from panel.person_month where in_pilot = 1").fetchall()[0][0]
        build_panels(con, moved)
        after = con.execute(query).fetchall()
        pilot_after = con.execute("select count(*) from panel.person_month where in_pilot = 1").fetchall()[0][0]
        tampere = con.execute("select count(*) from panel.cohort where baseline_kuntanumero = '837'").fetchall()[0][0]
    assert before == after
    assert pilot_after - pilot_before == 2 * tampere
