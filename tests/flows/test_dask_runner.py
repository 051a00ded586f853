"""The evaluate flow with its estimation fanned out on a Dask cluster gives the default runner's results.

Both runs share one Prefect test harness and one database (the second run finds the
delivery already loaded). The cluster is a local one with two worker processes, reached
by its scheduler address as a remote scheduler would be.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from pipeline import db
from pipeline.analysis import RESULT_TABLES
from pipeline.pseudonym import DEMO_KEY
from schemas.config import EvaluationConfig

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"


@dataclass(frozen=True)
class TwoRuns:
    """One run on the default task runner and one on Dask, in the same database."""

    db: Path
    default_run: str
    dask_run: str
    unit_tasks: list[dict]
    worker_pids: set[int]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, cheap_config: EvaluationConfig) -> TwoRuns:
    from distributed import Client, LocalCluster, get_task_stream
    from prefect.testing.utilities import prefect_test_harness

    from flows.evaluate import KEY_ENV, run_evaluate_flow

    out = tmp_path_factory.mktemp("dask")
    path = out / "e.duckdb"
    common = {"kela": SAMPLE / "kela", "avain": SAMPLE / "avain", "corrections": SAMPLE / "kela_correction",
              "db": path, "out": out, "config": cheap_config, "key": DEMO_KEY}
    saved_key = os.environ.get(KEY_ENV)
    try:
        with (LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
              Client(cluster, set_as_default=False) as client):
            # the workers import the task code while the harness starts
            warm = [client.submit(importlib.import_module, module, workers=[worker], pure=False)
                    for worker in client.scheduler_info()["workers"]
                    for module in ("flows.evaluate", "pipeline.estimates")]
            with prefect_test_harness(server_startup_timeout=120):
                default = run_evaluate_flow(**common)
                with get_task_stream(client=client) as stream:
                    dask = run_evaluate_flow(**common, task_runner="dask", dask_address=cluster.scheduler_address)
            pids = set(client.run(os.getpid).values())
            client.cancel(warm)
    finally:
        if saved_key is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = saved_key
    units = [t for t in stream.data if str(t["key"]).startswith("estimate_unit")]
    return TwoRuns(db=path, default_run=default.run_id, dask_run=dask.run_id, unit_tasks=units, worker_pids=pids)


def _tables(path: Path, run_id: str) -> dict[str, pl.DataFrame]:
    with db.connect(path, read_only=True) as con:
        return {t: db.query_frame(con, f"select * exclude (run_id) from results.{t} where run_id = ? order by all",
                                  [run_id]) for t in RESULT_TABLES}


@pytest.mark.slow
def test_dask_runner_gives_the_default_runners_results(two_runs: TwoRuns) -> None:
    default, dask = _tables(two_runs.db, two_runs.default_run), _tables(two_runs.db, two_runs.dask_run)
    for table in RESULT_TABLES:
        assert default[table].height > 0, table
        assert dask[table].equals(default[table]), table


@pytest.mark.slow
def test_every_unit_ran_on_a_dask_worker_process(two_runs: TwoRuns, cheap_config: EvaluationConfig) -> None:
    from pipeline.analysis import estimation_units

    with db.connect(two_runs.db, read_only=True) as con:
        expected = len(estimation_units(con, cheap_config))
        status = con.execute("select status from meta.runs where run_id = ?", [two_runs.dask_run]).fetchall()
    assert status == [("completed",)]
    assert len(two_runs.unit_tasks) == expected
    assert os.getpid() not in two_runs.worker_pids and len(two_runs.worker_pids) == 2


def test_runner_without_address_starts_a_local_cluster_of_processes() -> None:
    from flows.evaluate import LOCAL_CLUSTER, dask_runner

    local, remote = dask_runner(None), dask_runner("tcp://10.0.0.5:8786")
    assert local.address is None and local.cluster_kwargs == LOCAL_CLUSTER
    assert LOCAL_CLUSTER["processes"] is True
    assert remote.address == "tcp://10.0.0.5:8786" and remote.cluster_kwargs == {}
