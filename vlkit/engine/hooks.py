from __future__ import annotations

import json
import os.path as osp

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook

from ..evaluation import format_accuracy_table
from ..registry import HOOKS
from .guard import TrainingFault


@HOOKS.register_module()
class AccuracyTableHook(Hook):
    """Prints the validation accuracy as a table and writes it to ``{work_dir}/val_accuracy.json``."""

    priority = 'LOW'

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        if not metrics:
            return
        runner.logger.info('validation accuracy (%):\n' + format_accuracy_table({'accuracy': metrics}))
        record = {'iter': runner.iter, 'metrics': metrics}
        with open(osp.join(runner.work_dir, 'val_accuracy.json'), 'w') as f:
            json.dump(record, f, indent=2)


class DataSkipError(TrainingFault):
    """Too many bad samples: the data is broken, not merely noisy."""


@HOOKS.register_module()
class DataSkipsHook(Hook):
    """Logs the training data's skipped samples by reason and writes them to ``{work_dir}/data_skips.json``.

    Reads ``skipped`` (a :class:`vlkit.data.SkipCounter`) of the training dataset; datasets without
    one are left alone. Under DDP each rank writes its own counts (``data_skips_rank{r}.json`` beside rank
    0's) and the skip rate is taken over all ranks. With ``num_workers > 0`` the counts live in the worker
    processes and are not seen.

    Args:
        interval: iterations between reports (only reports with something skipped are logged).
        max_skip_rate: stop with :class:`DataSkipError`, naming the shards, once more than this share of the
            samples met was bad; ``None`` never stops.
        min_samples: samples to meet before ``max_skip_rate`` applies, so that one early bad shard does not
            stop a run.
    """

    priority = 'NORMAL'

    def __init__(self, interval: int = 50, max_skip_rate: float | None = 0.2, min_samples: int = 200) -> None:
        if max_skip_rate is not None and not 0 <= max_skip_rate < 1:
            raise ValueError(f'DataSkipsHook: max_skip_rate must be in [0, 1) or None, got {max_skip_rate!r}')
        self.interval = interval
        self.max_skip_rate = max_skip_rate
        self.min_samples = min_samples

    @staticmethod
    def _counter(runner):
        return getattr(getattr(runner.train_dataloader, 'dataset', None), 'skipped', None)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        counter = self._counter(runner)
        if counter is None or not self.every_n_train_iters(runner, self.interval):
            return
        summary = self._report(runner, counter, runner.iter + 1)
        # summed over ranks, so that every rank takes the same decision and none waits on a stopped one
        totals = torch.tensor(
            [sum(summary['skipped'].values()), summary['samples_read']], dtype=torch.float64
        )
        all_reduce(totals)
        bad, met = float(totals[0]), float(totals.sum())
        rate = bad / met if met else 0.0
        if self.max_skip_rate is not None and met >= self.min_samples and rate > self.max_skip_rate:
            raise DataSkipError(
                f'{rate:.1%} of the {met:.0f} training samples met were bad by iteration '
                f'{runner.iter + 1}, more than default_hooks.data_skips.max_skip_rate={self.max_skip_rate}; '
                f'reasons {summary["skipped"]}; bad samples per shard {summary["shards"]}'
            )

    def after_train(self, runner) -> None:
        counter = self._counter(runner)
        if counter is not None:
            self._report(runner, counter, runner.iter)  # the loop has counted the last iteration

    def _report(self, runner, counter, iteration: int) -> dict:
        summary = {'iter': iteration, **counter.summary()}
        if summary['skipped']:
            runner.logger.warning(
                f'training data: {sum(summary["skipped"].values())} bad samples skipped '
                f'({summary["skip_rate"]:.1%}) by reason {summary["skipped"]}, by shard {summary["shards"]}'
            )
        name = 'data_skips.json' if runner.rank == 0 else f'data_skips_rank{runner.rank}.json'
        with open(osp.join(runner.work_dir, name), 'w') as f:
            json.dump(summary, f, indent=2)
        return summary
