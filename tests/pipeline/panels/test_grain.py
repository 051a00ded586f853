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
