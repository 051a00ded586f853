"""The grain check after each panel model: a duplicated key fails the build in one line."""

from __future__ import annotations

import duckdb
import pytest

from pipeline.panels import Model, PanelError, check_grain

MODEL = Model("panel.person_month", ("person_key", "month"), ())


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema panel; create table panel.person_month (person_key uuid, month date, x integer)")
    con.execute("insert into panel.person_month select uuid(), date '2018-01-01' + to_months(i::integer), i "
                "from range(5) t(i)")
    return con


def test_unique_key_passes_and_counts_rows(con: duckdb.DuckDBPyConnection) -> None:
    assert check_grain(con, MODEL) == 5


def test_duplicated_key_fails_in_one_line(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("insert into panel.person_month select person_key, month, 99 from panel.person_month limit 2")
    with pytest.raises(PanelError, match=r"^panel.person_month: 2 duplicated \(person_key, month\) rows; [^\n]*$"):
        check_grain(con, MODEL)


def test_rows_equal_in_every_key_column_but_one_are_not_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("insert into panel.person_month select person_key, month + interval 5 month, 0 "
                "from panel.person_month")
    assert check_grain(con, MODEL) == 10


def _naive_duplicates(con: duckdb.DuckDBPyConnection, model: Model) -> int:
    """Rows beyond the first of each key value, counted on the whole key (the definition)."""
    key = ", ".join(model.key)
    return con.execute(f"select count(*) - (select count(*) from (select 1 from {model.table} group by {key})) "
                       f"from {model.table}").fetchall()[0][0]


def test_two_dates_in_one_month_are_not_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    # The month-bitmap screen flags the person; the exact recount on the key clears it.
    con.execute("insert into panel.person_month select person_key, month + interval 14 day, 1 from panel.person_month")
    assert check_grain(con, MODEL) == 10


def test_null_dates_count_as_one_key_value(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("insert into panel.person_month select person_key, null, 2 from panel.person_month")
    assert check_grain(con, MODEL) == 10
    con.execute("insert into panel.person_month select person_key, null, 3 from panel.person_month limit 3")
    with pytest.raises(PanelError, match=r"^panel.person_month: 3 duplicated "):
        check_grain(con, MODEL)


def test_duplicate_found_when_dates_span_more_months_than_the_bitmap(con: duckdb.DuckDBPyConnection) -> None:
    # 20 years of months: too many for the bitmap, so the whole key is grouped exactly.
    con.execute("insert into panel.person_month select person_key, month + to_months(240), 4 from panel.person_month")
    assert check_grain(con, MODEL) == 10
    con.execute("insert into panel.person_month select person_key, month, 5 from panel.person_month "
                "where month > date '2030-01-01' limit 1")
    with pytest.raises(PanelError, match=r"^panel.person_month: 1 duplicated "):
        check_grain(con, MODEL)


@pytest.mark.parametrize("seed", range(6))
def test_duplicate_count_equals_a_count_on_the_whole_key(seed: int) -> None:
    # Random persons x months (some repeated, some two dates in a month) and a key without a date column.
    con = duckdb.connect()
    con.execute(f"select setseed({seed / 10})")
    con.execute("create schema panel")
    con.execute("create table panel.person_month as select (random() * 40)::integer::varchar as person_key, "
                "(date '2017-01-01' + to_months((random() * 30)::integer) + to_days((random() < 0.1)::integer))::date "
                "as month, "
                "(random() * 3)::integer as year from range(400)")
    assert con.execute("select typeof(month) from panel.person_month limit 1").fetchall() == [("DATE",)]
    for model in (MODEL, Model("panel.person_month", ("person_key", "year"), ())):
        expected = _naive_duplicates(con, model)
        assert expected > 0
        with pytest.raises(PanelError, match=rf"^panel.person_month: {expected} duplicated "):
            check_grain(con, model)
        con.execute("create or replace table panel.unique_rows as select distinct on (person_key, month) * "
                    "from panel.person_month")
        assert check_grain(con, Model("panel.unique_rows", MODEL.key, ())) == \
            con.execute("select count(*) from panel.unique_rows").fetchall()[0][0]
