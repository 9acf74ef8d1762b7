"""What the tests share besides the tiny presets (:mod:`vlkit.testing`): a shard writer, the one helper
that runs a tool in a subprocess, one that kills a training run once it has written a checkpoint, and a
checkpoint that would run code. Test files import from here and from vlkit.testing, never from each other;
fixtures live in conftest.py."""

from __future__ import annotations

import io
import os
import os.path as osp
import signal
import subprocess
import sys
import tarfile
import time
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


def kill_after(args: list[str], checkpoint: str, timeout: float = 120) -> None:
    """Starts ``tools/train.py ARGS`` and SIGKILLs it as soon as ``checkpoint`` has been published."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    process = subprocess.Popen(
        [sys.executable, str(ROOT / 'tools' / 'train.py'), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not osp.exists(checkpoint) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, 'the run ended before it could be killed'


class RunsACommand:
    """A pickle that runs a shell command when loaded (what torch.load(weights_only=False) would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def malicious_checkpoint(path, marker) -> str:
    """A checkpoint at ``path`` whose pickle would create ``marker`` if a loader ran its code."""
    import torch

    torch.save({'state_dict': {}, 'meta': RunsACommand(str(marker))}, str(path))
    return str(path)
