"""What the tests share besides the tiny presets (:mod:`vlkit.testing`): a shard writer and the one helper
that runs a tool in a subprocess. Test files import from here and from vlkit.testing, never from each other;
fixtures live in conftest.py."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_shard(path, members: list[tuple[str, bytes]]) -> str:
    """Writes a webdataset tar shard of ``(member name, bytes)`` pairs; returns its path."""
    with tarfile.open(path, 'w') as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def run_tool(
    tool: str, *args: str, check: bool = True, pythonpath: list[str] | None = None, **env: str
) -> subprocess.CompletedProcess:
    """Runs ``python tools/TOOL ARGS`` from the repository root in a subprocess, as a user would.

    Args:
        tool: a file in ``tools/`` (``train.py``, ...), or ``-m MODULE`` to run a module (``-m pytest``).
        check: fail the test, showing the output's end, unless the process exits 0.
        pythonpath: folders before the repository root on ``PYTHONPATH`` (a user's plug-in project).
        env: more environment variables (``OMP_NUM_THREADS='1'``, ...).
    """
    command = tool.split() if tool.startswith('-m ') else [str(ROOT / 'tools' / tool)]
    path = os.pathsep.join([*(pythonpath or []), str(ROOT)])
    result = subprocess.run(
        [sys.executable, *command, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=path, **env),
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
