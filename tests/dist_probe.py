"""A test-only hook that records what one DDP rank trained on and ended with.

Loaded by configs through ``custom_imports=dict(imports=['tests.dist_probe'])``.
"""

from __future__ import annotations

import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from vlkit.registry import HOOKS


@HOOKS.register_module()
class RankProbeHook(Hook):
    """Writes ``{work_dir}/rank{r}.pth``: batches trained, the first batch's token ids, the final weights."""

    def __init__(self) -> None:
        self.batches = 0
        self.first_ids: torch.Tensor | None = None

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.batches += 1
        if self.first_ids is None:
            self.first_ids = data_batch['input_ids'].clone()

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        record = {
            'batches': self.batches,
            'first_ids': self.first_ids,
            'world_size': runner.world_size,
            'state_dict': {k: v.detach().clone() for k, v in model.state_dict().items()},
        }
        torch.save(record, osp.join(runner.work_dir, f'rank{runner.rank}.pth'))
