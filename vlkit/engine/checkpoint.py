"""Checkpoints that survive a crash: atomic writes, a pointer updated last, and a resume that falls back.

MMEngine writes ``iter_N.pth`` in place and then ``last_checkpoint``; a run killed mid-write leaves a
truncated newest checkpoint that ``--resume`` then fails on. :class:`AtomicCheckpointHook` writes to a
temporary file, flushes and fsyncs it, renames it over the final name (atomic on POSIX) and only then
updates the pointer; :func:`find_resumable_checkpoint` picks the newest checkpoint in a work dir that
reads back whole, warning about each unreadable one it passes over.
"""

from __future__ import annotations

import glob
import os
import os.path as osp
import random
import re
import zipfile

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from ..registry import HOOKS

POINTER = 'last_checkpoint'
_STEP = re.compile(r'(?:iter|epoch)_(\d+)\.pth$')


def register_trusted_checkpoint_loader() -> None:
    """Lets ``--resume`` read the toolkit's own checkpoints under torch >= 2.6.

    torch now loads with ``weights_only=True`` by default, but MMEngine's checkpoints pickle its message
    hub (``HistoryBuffer``) and numpy objects. Local paths are checkpoints this toolkit wrote, so they are
    loaded in full; weights from outside go through ``weights_only=True`` or safetensors instead
    (see ``vlkit.models.encoders.timm_encoder``).
    """

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_local(filename: str, map_location=None):
        return torch.load(filename, map_location=map_location, weights_only=False)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_file(tmp_path: str, final_path: str) -> None:
    """Makes ``tmp_path`` durable, then renames it to ``final_path`` in one step."""
    with open(tmp_path, 'rb+') as f:
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_path, final_path)
    _fsync_dir(osp.dirname(osp.abspath(final_path)))


def write_text_atomic(path: str, text: str) -> None:
    """Writes a small text file so that readers see either the old or the new contents."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    publish_file(tmp, path)


def is_readable_checkpoint(path: str) -> tuple[bool, str]:
    """Whether ``path`` is a whole torch checkpoint (zip archive, every member's CRC intact), and why not."""
    if not osp.isfile(path):
        return False, 'no such file'
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return False, f'{type(err).__name__}: {err}'
    if bad is not None:
        return False, f'member {bad!r} fails its CRC check'
    return True, ''


def _step_of(path: str) -> int:
    match = _STEP.search(osp.basename(path))
    return int(match.group(1)) if match else -1


def find_resumable_checkpoint(work_dir: str) -> str | None:
    """The newest readable checkpoint in ``work_dir``: the pointer's target first, then ``iter_N.pth`` by N.

    Each unreadable candidate is named in a warning and passed over; ``None`` when nothing readable is left.
    """
    found = [p for p in glob.glob(osp.join(work_dir, '*_*.pth')) if _step_of(p) >= 0]
    candidates = sorted(found, key=_step_of, reverse=True)
    pointer = osp.join(work_dir, POINTER)
    if osp.isfile(pointer):
        with open(pointer) as f:
            target = f.read().strip()
        newest = _step_of(candidates[0]) if candidates else -1
        if target and _step_of(target) >= newest:
            candidates.insert(0, target)
    seen = set()
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        ok, why = is_readable_checkpoint(path)
        if ok:
            return path
        print_log(
            f'checkpoint {path} is unreadable ({why}); skipping it and trying the next newest one',
            logger='current',
            level=30,
        )
    return None


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook`` with crash-safe local writes (see the module docstring).

    The new checkpoint is complete on disk before the oldest kept one is removed and before
    ``last_checkpoint`` names it. Remote back ends (``backend_args``) keep MMEngine's behaviour.
    """

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        if self.backend_args or self.file_client_args:
            return super()._save_checkpoint_with_step(runner, step, meta)
        filename = self.filename_tmpl.format(step)
        final = osp.join(self.out_dir, filename)
        tmp_name = f'.{filename}.tmp'
        runner.save_checkpoint(
            self.out_dir,
            tmp_name,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            **self.args,
        )
        self.last_ckpt = final
        runner.message_hub.update_info('last_ckpt', final)
        if not is_main_process():
            return
        publish_file(osp.join(self.out_dir, tmp_name), final)
        write_text_atomic(osp.join(runner.work_dir, POINTER), final)
        self._drop_old(runner, step)

    def _drop_old(self, runner, step: int) -> None:
        """Keeps the newest ``max_keep_ckpts`` checkpoints; runs after the new one is safely written."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return
        # keep_ckpt_ids is a deque of maxlen max_keep_ckpts: take the oldest out before it drops silently
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            old = osp.join(self.out_dir, self.filename_tmpl.format(self.keep_ckpt_ids.popleft()))
            if osp.isfile(old):
                os.remove(old)
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves the Python, NumPy and torch (CPU and CUDA) random states in each checkpoint and restores them
    on resume, so that dropout and other random draws after a resume are those of a straight run.

    MMEngine only re-seeds on resume, which replays the draws of iteration 0 instead.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_states'] = {
            'python': random.getstate(),
            'numpy': np.random.get_state(),
            'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_states')
        if states is None:
            runner.logger.warning('the checkpoint holds no random states; random draws will not match')
            return
        random.setstate(states['python'])
        np.random.set_state(states['numpy'])
        torch.set_rng_state(states['torch'])
        if states['cuda'] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states['cuda'])
