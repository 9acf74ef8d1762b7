"""Checkpoints: safe loading, crash-safe writes, a pointer updated last, and a resume that falls back.

Loading: :func:`load_checkpoint_file` reads every checkpoint with ``weights_only=True``, so that a pickle
cannot run code. The few types that MMEngine's own checkpoints pickle besides tensors (its message hub's
``HistoryBuffer``, numpy arrays and scalars) are allowed only inside that call
(:func:`mmengine_checkpoint_types`), never for the whole process.

Writing: MMEngine writes ``iter_N.pth`` in place and then ``last_checkpoint``; a run killed mid-write leaves
a truncated newest checkpoint that ``--resume`` then fails on. :class:`AtomicCheckpointHook` writes to a
temporary file, flushes and fsyncs it, renames it over the final name (atomic on POSIX) and only then
updates the pointer; :func:`find_resumable_checkpoint` picks the newest checkpoint in a work dir that
reads back whole, warning about each unreadable one it passes over.
"""

from __future__ import annotations

import contextlib
import glob
import os
import os.path as osp
import pickle
import random
import re
import zipfile
from collections import Counter
from collections.abc import Iterator

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer

from ..registry import HOOKS

POINTER = 'last_checkpoint'
_STEP = re.compile(r'(?:iter|epoch)_(\d+)\.pth$')


def _history_buffer_statistic(owner, name: str):
    """``getattr`` as MMEngine's pickled ``HistoryBuffer`` uses it (its statistics methods by name), and
    for nothing else: a general ``getattr`` would let a pickle reach any method of an allowed object."""
    statistics = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if owner is HistoryBuffer and name in statistics:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'getattr({owner!r}, {name!r}) is not a HistoryBuffer statistic')


def _numpy_globals() -> list:
    """numpy's arrays, numeric dtypes (their classes, as numpy 2 pickles them) and scalars, with the
    reconstructors under the names numpy 1 and numpy 2 pickle them by."""
    core = getattr(np, '_core', None) or np.core
    found = [np.ndarray, np.dtype, *{type(np.dtype(code)) for code in '?bBhHiIlLqQefdFD'}]
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        found += [
            (core.multiarray._reconstruct, f'{module}._reconstruct'),
            (core.multiarray.scalar, f'{module}.scalar'),
        ]
    return found


@contextlib.contextmanager
def mmengine_checkpoint_types() -> Iterator[None]:
    """Allows, for ``weights_only=True`` loads inside this block only, what MMEngine checkpoints hold besides
    tensors: ``HistoryBuffer`` (with its statistics methods), numpy arrays, dtypes and scalars."""
    allowed = [HistoryBuffer, (_history_buffer_statistic, 'builtins.getattr'), *_numpy_globals()]
    with torch.serialization.safe_globals(allowed):
        yield


class CheckpointLoadError(RuntimeError):
    """A checkpoint that vlkit will not load: unreadable, holding code, or not matching the model."""


def load_checkpoint_file(path: str, map_location='cpu') -> dict:
    """Reads a checkpoint with ``weights_only=True`` (MMEngine's own types allowed for this call only).

    Raises:
        CheckpointLoadError: naming the file and what it holds that a weights-only load refuses (a pickle
            that would call a function, e.g. one that runs a command, is refused here before it runs).
    """
    if not osp.isfile(path):
        raise CheckpointLoadError(f'checkpoint {path!r} does not exist')
    try:
        with mmengine_checkpoint_types():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointLoadError(
            f"refused to load {path}: it holds objects other than weights and the types of vlkit's own "
            'checkpoints, and vlkit loads every checkpoint with weights_only=True '
            f'({str(err).splitlines()[0]})'
        ) from err


def read_last_checkpoint(work_dir: str) -> str | None:
    """The checkpoint that ``{work_dir}/last_checkpoint`` names, or None when there is no pointer; the path is
    not checked (see :func:`find_resumable_checkpoint` for one that reads back whole)."""
    pointer = osp.join(work_dir, POINTER)
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip() or None


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


def publish_dir(tmp_dir: str, final_dir: str) -> None:
    """Makes every file in ``tmp_dir`` durable, then renames the directory to ``final_dir`` (which must not
    exist) in one step: readers see the whole directory or none of it."""
    for name in os.listdir(tmp_dir):
        path = osp.join(tmp_dir, name)
        if osp.isfile(path):
            with open(path, 'rb+') as f:
                os.fsync(f.fileno())
    _fsync_dir(tmp_dir)
    os.rename(tmp_dir, final_dir)
    _fsync_dir(osp.dirname(osp.abspath(final_dir)))


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
    target = read_last_checkpoint(work_dir)
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


def _shape(t) -> tuple:
    return tuple(t.shape) if hasattr(t, 'shape') else ()


def check_state_dict(expected: dict, found: dict, source: str, hint: str = '') -> None:
    """Raises :class:`CheckpointLoadError` unless ``found`` has exactly the keys and shapes of ``expected``,
    naming the missing, the unexpected and the mismatched keys (a few of each, and how many)."""

    def listed(keys: list[str]) -> str:
        """How many, per model part (the key's first name), and the first few in full."""
        parts = Counter(k.split('.', 1)[0] for k in keys)
        per_part = ', '.join(f'{p}.* {n}' for p, n in parts.items())
        return f'{len(keys)}: {per_part}; first {keys[:4]}' + (' ...' if len(keys) > 4 else '')

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [
        f'{k} {_shape(found[k])} (model: {_shape(expected[k])})'
        for k in expected
        if k in found and _shape(found[k]) != _shape(expected[k])
    ]
    problems = [
        f'lacks weights the model needs ({listed(missing)})' if missing else '',
        f'holds weights the model has no place for ({listed(unexpected)})' if unexpected else '',
        f'has weights of another shape ({listed(mismatched)})' if mismatched else '',
    ]
    problems = [p for p in problems if p]
    if problems:
        raise CheckpointLoadError(f'{source} ' + '; '.join(problems) + (f'. {hint}' if hint else ''))


PART_EXPORT_CONFIG = 'config.json'
PART_EXPORT_FORMAT = 'vlkit-part'


def save_part(module: torch.nn.Module, part: str, out: str, config: dict) -> str:
    """Writes one model part as a folder that ``load_parts`` and anyone else reads: ``{part}.safetensors``
    (keys relative to the part) and ``config.json`` (``config``: what builds the part, its dimensions
    included, and where it came from). Returns the folder."""
    import json

    from safetensors.torch import save_file

    os.makedirs(out, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, osp.join(out, f'{part}.safetensors'), metadata={'format': 'pt'})
    record = {'format': PART_EXPORT_FORMAT, 'part': part, **config}
    with open(osp.join(out, PART_EXPORT_CONFIG), 'w') as f:
        json.dump(record, f, indent=2, default=str)
        f.write('\n')
    return out


def read_part_export(folder: str) -> dict | None:
    """The ``config.json`` of a part export (:func:`save_part`), or None when ``folder`` is not one."""
    import json

    path = osp.join(folder, PART_EXPORT_CONFIG)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    return record if record.get('format') == PART_EXPORT_FORMAT else None


def part_file(path: str, part: str, key: str) -> str:
    """The file that holds ``part`` for ``load_parts``: ``path`` itself, or inside a folder: a part export's
    ``{part}.safetensors``, or a work dir's last checkpoint. ``key`` names the setting in errors."""
    if not osp.isdir(path):
        return path
    export = read_part_export(path)
    if export is not None:
        if export['part'] != part:
            raise CheckpointLoadError(f'{key}={path!r} is an export of the {export["part"]}, not the {part}')
        return osp.join(path, f'{part}.safetensors')
    last = read_last_checkpoint(path)
    if last is None:
        raise CheckpointLoadError(
            f'{key}={path!r} is a folder with neither a part export ({PART_EXPORT_CONFIG}, tools/export.py '
            f'--to {part}) nor a {POINTER} file (a work dir)'
        )
    return last


def part_state_dict(path: str, part: str) -> dict:
    """The weights of one model part (``connector``, ...) from a vlkit checkpoint (keys ``part.*``), from a
    file of that part alone (``.safetensors`` or ``.pth``, keys relative to the part), or from a folder: a
    part export (:func:`save_part`) or a work dir (its last checkpoint)."""
    path = part_file(path, part, f'load_parts.{part}')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = load_checkpoint_file(path)
        state = state.get('state_dict', state)
    prefix = f'{part}.'
    if any(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def load_parts(model: torch.nn.Module, parts: dict[str, str]) -> None:
    """Loads each named part of ``model`` from its file (``load_parts=dict(connector=FILE, ...)``), strictly:
    a missing, unexpected or mismatched weight is refused, naming the key."""
    for part, path in parts.items():
        module = getattr(model, part, None)
        if not isinstance(module, torch.nn.Module):
            names = list(getattr(model, 'PARTS', [n for n, _ in model.named_children()]))
            raise CheckpointLoadError(
                f'load_parts.{part}: the model has no part {part!r}; its parts: {names}'
            )
        state = part_state_dict(path, part)
        _check_export_type(path, part, module)
        check_state_dict(module.state_dict(), state, f'load_parts.{part}={path!r}')
        module.load_state_dict(state)
        print_log(f'loaded {part} from {path}', logger='current')


def _check_export_type(path: str, part: str, module: torch.nn.Module) -> None:
    """A part export built as another type is refused even where the shapes happen to agree."""
    export = read_part_export(path) if osp.isdir(path) else None
    exported = ((export or {}).get('config') or {}).get('type')
    found = type(module).__name__
    if exported is not None and exported != found:
        raise CheckpointLoadError(
            f"load_parts.{part}={path!r} holds a {exported}, but the model's {part} is a {found}"
        )
