"""`kokeilu serve` registers its deployments, with their schedules, against a running Prefect API."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the Prefect server did not become healthy within 120 s")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_serve_registers_deployments_with_schedules(prefect_api: str, tmp_path: Path) -> None:
    code = f"""
import asyncio, json
from pathlib import Path
from flows.deployments import register_deployments
from prefect.client.orchestration import get_client
ids = register_deployments(kela=Path({str(tmp_path / 'kela')!r}), avain=None, db=Path({str(tmp_path / 'e.duckdb')!r}))
async def read():
    async with get_client() as client:
        out = []
        for d in await client.read_deployments():
            out.append({{"name": d.name, "crons": [s.schedule.cron for s in d.schedules], "tz": [s.schedule.timezone for s in d.schedules], "active": [s.active for s in d.schedules]}})
        return out
print(json.dumps({{"ids": ids, "deployments": asyncio.run(read())}}))
"""
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    by_name = {d["name"]: d for d in result["deployments"]}
    assert len(result["ids"]) == 2
    assert by_name["monthly-evaluation"]["crons"] == ["0 6 20 * *"]
    assert by_name["daily-contract-check"]["crons"] == ["0 5 * * *"]
    assert by_name["monthly-evaluation"]["tz"] == ["Europe/Helsinki"]
    assert all(all(d["active"]) for d in by_name.values())
