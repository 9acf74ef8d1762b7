"""MMEngine's runners with vlkit's checkpoint loading (docs/architecture.md, "Checkpoints").

* Every checkpoint is read with ``weights_only=True`` (:func:`vlkit.engine.checkpoint.load_checkpoint_file`):
  ``load_from``, ``--resume`` and ``tools/test.py`` refuse a pickle that would run code.
* ``load_from`` and ``--resume`` load the whole model: a checkpoint that lacks a weight the model needs, holds
  one it has no place for, or has one of another shape is refused, naming the keys.
* Loading only some parts is declared: ``load_parts = dict(connector='stage1/iter_2000.pth')`` loads each
  named part, strictly, from a vlkit checkpoint or a file of that part alone, before training starts (and
  not on a resume, whose checkpoint already holds them).

The tools build these runners; MMEngine's own are left untouched for the rest of the process.
"""

from __future__ import annotations

import re

from mmengine.model import is_model_wrapper
from mmengine.runner import FlexibleRunner as MMEngineFlexibleRunner
from mmengine.runner import Runner as MMEngineRunner
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from ..registry import RUNNERS
from .checkpoint import (
    CheckpointLoadError,
    check_state_dict,
    load_checkpoint_file,
    load_parts,
    mmengine_checkpoint_types,
)

WHOLE_MODEL_HINT = (
    'To load only some parts of the model, set load_parts=dict(PART=FILE) instead of load_from.'
)


def _revised_state_dict(checkpoint: dict, revise_keys: list) -> dict:
    state = checkpoint.get('state_dict', checkpoint)
    for pattern, replacement in revise_keys:
        state = {re.sub(pattern, replacement, k): v for k, v in state.items()}
    return state


@RUNNERS.register_module()
class Runner(MMEngineRunner):
    """MMEngine's ``Runner``, loading checkpoints safely and whole, with declared partial loading (module
    docstring)."""

    def load_checkpoint(
        self,
        filename: str,
        map_location='cpu',
        strict: bool = True,
        revise_keys: tuple = ((r'^module.', ''),),
    ) -> dict:
        checkpoint = load_checkpoint_file(filename, map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        if strict:
            check_state_dict(
                model.state_dict(), _revised_state_dict(checkpoint, revise_keys), filename, WHOLE_MODEL_HINT
            )
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def load_or_resume(self) -> None:
        if self._has_loaded:
            return
        parts = self.cfg.get('load_parts')
        if parts and self._load_from is not None and not self._resume:
            raise CheckpointLoadError(
                f'load_from={self._load_from!r} loads every weight and load_parts={dict(parts)} some of '
                'them; set one of the two'
            )
        super().load_or_resume()
        if parts and not self._has_loaded:
            model = self.model.module if is_model_wrapper(self.model) else self.model
            load_parts(model, dict(parts))
            self._has_loaded = True


@RUNNERS.register_module()
class FlexibleRunner(MMEngineFlexibleRunner):
    """MMEngine's ``FlexibleRunner`` (DeepSpeed, FSDP; CUDA only), loading with ``weights_only=True`` and
    MMEngine's own types allowed only for the call, strictly by default."""

    def load_checkpoint(self, filename: str, **kwargs) -> dict:
        kwargs.setdefault('strict', True)
        with mmengine_checkpoint_types():
            return super().load_checkpoint(filename, **kwargs)

    def resume(self, filename: str, **kwargs) -> None:
        with mmengine_checkpoint_types():
            return super().resume(filename, **kwargs)


def build_runner(cfg) -> MMEngineRunner | MMEngineFlexibleRunner:
    """The runner for a config: :class:`FlexibleRunner` with a ``strategy``, else :class:`Runner`.

    Raises:
        CheckpointLoadError: for ``load_parts`` with a ``strategy`` (DeepSpeed, FSDP), whose runner builds and
            shards the model itself: the parts would not load, so the run is refused instead of starting
            from the wrong weights.
    """
    if 'strategy' in cfg and cfg.get('load_parts') and not cfg.get('resume'):
        strategy = cfg.strategy.get('type')
        raise CheckpointLoadError(
            f'load_parts={dict(cfg.load_parts)} does not work with strategy={strategy!r}, which shards the '
            'model as it builds it; start from a whole checkpoint with load_from instead (a stage 1 '
            'checkpoint holds every weight of a stage 2 of the same architecture)'
        )
    return (FlexibleRunner if 'strategy' in cfg else Runner).from_cfg(cfg)
