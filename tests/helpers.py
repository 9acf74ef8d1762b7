"""What the tests share besides the tiny presets (:mod:`vlkit.testing`): a shard writer, the one helper
that runs a tool in a subprocess, one that kills a training run once it has written a checkpoint, a
checkpoint that would run code, and a VQAv2 question + annotation pair in the public layout. Test files
import from here and from vlkit.testing, never from each other; fixtures live in conftest.py."""

from __future__ import annotations

import io
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VQA_QUESTIONS = ('what colour', 'what colour', 'how many dogs')  # of questions 101, 201 and 202


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


def _vqa_answers(*answers: str) -> list[dict]:
    return [{'answer': x, 'answer_confidence': 'yes', 'answer_id': i + 1} for i, x in enumerate(answers)]


def write_vqa_pair(folder: Path, questions: tuple[str, str, str] = VQA_QUESTIONS) -> tuple[Path, Path, Path]:
    """A VQAv2 val questions + annotations pair over two COCO images (a red one, a blue one) in the public
    layout under ``folder``: q101 on image 1 (10 x red), q201 on image 2 (8 x blue, 2 x green), q202 on
    image 2 (a number: 5 x 2, 2 x two, 2 x 3, 1 x 4). Returns the two files and the images' root."""
    from PIL import Image

    images = folder / 'coco'
    (images / 'val2014').mkdir(parents=True, exist_ok=True)
    for image_id, colour in ((1, (200, 0, 0)), (2, (0, 0, 200))):
        Image.new('RGB', (24, 16), colour).save(images / f'val2014/COCO_val2014_{image_id:012d}.jpg', 'JPEG')
    ids = ((1, 101), (2, 201), (2, 202))
    entries = [
        {'image_id': i, 'question': q, 'question_id': qid} for (i, qid), q in zip(ids, questions, strict=True)
    ]
    answers = {
        101: ('red', 'other', _vqa_answers(*['red'] * 10)),
        201: ('blue', 'other', _vqa_answers(*['blue'] * 8, 'green', 'green')),
        202: ('2', 'number', _vqa_answers(*['2'] * 5, *['two'] * 2, '3', '3', '4')),
    }
    annotations = [
        {'question_id': qid, 'image_id': i, 'multiple_choice_answer': answers[qid][0],
         'answer_type': answers[qid][1], 'answers': answers[qid][2]}
        for i, qid in ids
    ]  # fmt: skip
    q = folder / 'v2_OpenEnded_mscoco_val2014_questions.json'
    a = folder / 'v2_mscoco_val2014_annotations.json'
    q.write_text(json.dumps({'data_subtype': 'val2014', 'questions': entries}))
    a.write_text(json.dumps({'annotations': annotations}))
    return q, a, images
