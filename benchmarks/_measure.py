"""Wall time and peak resident memory of one child process.

Each measurement runs in a fresh interpreter (or any command), so that its peak
RSS is its own and not the maximum over everything the benchmark did before.
The peak is the kernel's ``ru_maxrss`` of that child, read with ``os.wait4``
when it is reaped: exact, no polling.

``target`` is either a command (a list of arguments) or ``"file.py:function"`` /
``"package.module:function"``, called with ``args`` as strings in a new Python
process; whatever the child prints to stdout is kept in :attr:`Measurement.stdout`
(the benchmarks print one JSON line of their own timings there).

Example::

    seconds, peak = measure(["python", "-c", "x = bytearray(10**8)"])
    m = run("benchmarks/twfe.py:child_pyfixest", "/tmp/panel.parquet")
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

Target = Union[str, Sequence[str]]

_CALL = """
import importlib, importlib.util, sys
where, name = sys.argv[1].rsplit(":", 1)
if where.endswith(".py"):
    sys.path.insert(0, str(__import__("pathlib").Path(where).resolve().parent))
    spec = importlib.util.spec_from_file_location("_measured", where)
    module = sys.modules["_measured"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
else:
    module = importlib.import_module(where)
getattr(module, name)(*sys.argv[2:])
"""


@dataclass(frozen=True)
class Measurement:
    """One child process: wall seconds, CPU seconds (user + system), peak RSS in bytes, and what it printed."""

    seconds: float
    peak_rss_bytes: int
    stdout: str
    cpu_seconds: float

    def last_json(self) -> dict[str, Any]:
        """The last stdout line, parsed as JSON (the child's own report)."""
        return json.loads(self.stdout.strip().splitlines()[-1])


def command_of(target: Target, *args: str) -> list[str]:
    """The argument list that runs ``target``: a command as given, or a function in a new interpreter."""
    if isinstance(target, str):
        if ":" not in target:
            raise ValueError(f"measure: expected 'file.py:function' or 'module:function', found {target!r}")
        return [sys.executable, "-c", _CALL, target, *args]
    return [*target, *args]


def run(target: Target, *args: str, env: dict[str, str] | None = None) -> Measurement:
    """Run ``target`` in a child process; raise ``RuntimeError`` with its stderr if it fails."""
    cmd = command_of(target, *args)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{target!r} {list(args)} exited with {proc.returncode}:\n{stderr[-4000:]}")
    # Linux reports ru_maxrss in KiB.
    return Measurement(seconds, int(usage.ru_maxrss) * 1024, stdout, usage.ru_utime + usage.ru_stime)


def measure(target: Target, *args: str) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of ``target`` run in a child process."""
    m = run(target, *args)
    return m.seconds, m.peak_rss_bytes


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, Python version and load average (1/5/15 min) of this machine, for the results."""
    import platform

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split("MemTotal:", 1)[1].split()[0])
        ram = f"{kib / 2**20:.1f} GiB"
    return {"cpu": cpu, "cores": str(os.cpu_count()), "ram": ram,
            "python": f"{platform.python_version()} ({platform.python_implementation()})",
            "os": platform.platform(), "load": "{:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())}
