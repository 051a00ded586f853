"""Estimation units run in worker processes give the tables they give in this process, to the bit."""

from __future__ import annotations

import logging
import sys

import polars as pl
import pytest

from pipeline import analysis, db


@pytest.fixture(scope="module")
def units(loaded_small, cheap_config) -> tuple[list[analysis.Unit], list[dict[str, pl.DataFrame]],
                                              list[dict[str, pl.DataFrame]]]:
    """The units of the small delivery, their inputs, and their tables computed here, one after another."""
    path, _, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        units = analysis.estimation_units(con, cheap_config)
        inputs = analysis.units_inputs(con, units)
    return units, inputs, analysis.run_units(units, inputs, cheap_config)


def _same(a: list[dict[str, pl.DataFrame]], b: list[dict[str, pl.DataFrame]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for name in x:
            assert x[name].equals(y[name], null_equal=True), name


def test_a_worker_computes_each_unit_as_this_process_does(units, cheap_config) -> None:
    units_, inputs, here = units
    worker = analysis.UnitWorker()
    try:
        assert worker.ready()
        there = [worker.run(unit, frames, cheap_config) for unit, frames in zip(units_, inputs, strict=True)]
    finally:
        worker.close()
    assert {unit.kind for unit in units_} == {"monthly", "yearly", "avain"}
    _same(there, here)


def test_units_shared_with_workers_come_back_in_unit_order(units, cheap_config) -> None:
    units_, inputs, here = units
    workers = [analysis.UnitWorker(), analysis.UnitWorker()]
    try:
        assert all(w.ready() for w in workers)  # ready before this process starts: they take units too
        shared = analysis.run_units(units_, inputs, cheap_config, workers=workers)
        ran = sum(w.units_run for w in workers)
    finally:
        for w in workers:
            w.close()
    _same(shared, here)
    assert 1 <= ran < len(units_)  # this process takes the heaviest unit first


def test_a_worker_that_fails_leaves_its_units_to_this_process(units, cheap_config, monkeypatch, caplog) -> None:
    units_, inputs, here = units
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the worker exits at once
    worker = analysis.UnitWorker()
    with caplog.at_level(logging.WARNING, logger="pipeline.analysis"):
        try:
            shared = analysis.run_units(units_, inputs, cheap_config, workers=[worker])
        finally:
            worker.close()
    _same(shared, here)
    assert worker.units_run == 0
    assert "estimation worker failed" in caplog.text


def test_estimate_all_is_the_same_in_one_process_or_two(loaded_small, cheap_config) -> None:
    path, _, _ = loaded_small
    with db.connect(path, read_only=True) as con:
        one = analysis.estimate_all(con, cheap_config, processes=1)
        two = analysis.estimate_all(con, cheap_config, processes=2)
    _same([one], [two])
    assert one["did_estimates"].height > 0
