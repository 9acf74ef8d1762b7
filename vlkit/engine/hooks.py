from __future__ import annotations

import json
import os.path as osp

from mmengine.hooks import Hook

from ..evaluation.report import format_accuracy_table
from ..registry import HOOKS


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
