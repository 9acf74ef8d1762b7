"""Exact-match answer accuracy per task (the synthetic benchmark's metric)."""

from __future__ import annotations

from collections import defaultdict

from mmengine.evaluator import BaseMetric

from ..registry import METRICS


def normalize_answer(text: str) -> str:
    return ' '.join(text.lower().strip().rstrip('.').split())


@METRICS.register_module()
class ExactMatchAccuracy(BaseMetric):
    """Exact-match answer accuracy (%) per task and ``overall`` (the mean over tasks, so each task counts
    equally whatever its sample count)."""

    default_prefix = 'exact_match'
    overall_definition = 'the mean of the per-task accuracies (each task counts equally)'

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            hit = normalize_answer(s['prediction']) == normalize_answer(s['answer'])
            self.results.append((s.get('task') or 'all', hit))

    def compute_metrics(self, results: list) -> dict[str, float]:
        by_task = defaultdict(list)
        for task, hit in results:
            by_task[task].append(hit)
        metrics = {task: 100.0 * sum(h) / len(h) for task, h in sorted(by_task.items())}
        metrics['overall'] = sum(metrics.values()) / len(metrics)
        return metrics
