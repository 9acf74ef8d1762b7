"""What a model takes from its images: every question asked twice, with its images and with blank ones, in
the same batches (``tools/test.py --compare-blank``).

:class:`BlankImagePairs` yields each sample of a dataset, then a copy whose images are all blank (constant
mid-grey, :func:`vlkit.data.transforms.blank_like`), tagged ``variant='images'`` and
``variant='blank images'``; a batch then holds both, so one generation pass (the prompt's KV cache built
once per row) answers both evaluations. :class:`ByVariant` scores each variant with its own instance of
the evaluation's metric and names the second's figures ``PREFIX/blank images/KEY``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from mmengine.evaluator import BaseMetric
from torch.utils.data import Dataset, IterableDataset

from ..data.transforms import blank_like
from ..registry import DATASETS, METRICS

IMAGES, BLANK = 'images', 'blank images'


@DATASETS.register_module()
class BlankImagePairs(IterableDataset):
    """Each sample of ``dataset`` (a ``DATASETS`` config or a dataset), then its copy with blank images."""

    def __init__(self, dataset: dict | Dataset) -> None:
        super().__init__()
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset

    def __len__(self) -> int:
        return 2 * len(self.dataset)

    @property
    def question_only_prior(self) -> dict | None:
        return getattr(self.dataset, 'question_only_prior', None)

    def __iter__(self) -> Iterator[dict]:
        for sample in self.dataset:
            yield {**sample, 'variant': IMAGES}
            blank = {k: blank_like(v) if k in ('image', 'images') else v for k, v in sample.items()}
            yield {**blank, 'variant': BLANK}


@METRICS.register_module()
class ByVariant(BaseMetric):
    """Scores each ``variant`` of the predictions with its own copy of ``metric`` (a ``METRICS`` config).

    The main variant (``images``, or samples without one) keeps the metric's keys (``exact_match/colour``);
    another's are ``exact_match/blank images/colour``. Only the main variant writes a benchmark's submission
    file (``submission_file``).
    """

    def __init__(self, metric: dict, collect_device: str = 'cpu') -> None:
        super().__init__(collect_device=collect_device, prefix='')
        self.metric_cfg = dict(metric)
        self._metrics: dict[str, BaseMetric] = {}

    @property
    def main(self) -> BaseMetric:
        """The metric of the main variant (the real images)."""
        return self._metric(IMAGES)

    def _metric(self, variant: str) -> BaseMetric:
        if variant not in self._metrics:
            cfg = dict(self.metric_cfg)
            if variant != IMAGES and 'submission_file' in cfg:
                cfg['submission_file'] = None
            self._metrics[variant] = METRICS.build(cfg)
        return self._metrics[variant]

    def process(self, data_batch, data_samples) -> None:
        groups = defaultdict(list)
        for sample in data_samples:
            groups[sample.get('variant') or IMAGES].append(sample)
        for variant, samples in groups.items():
            metric = self._metric(variant)
            metric.results.clear()
            metric.process(data_batch, samples)
            self.results += [(variant, r) for r in metric.results]

    def compute_metrics(self, results: list) -> dict[str, float]:
        groups = defaultdict(list)
        for variant, result in results:
            groups[variant].append(result)
        scores = {}
        for variant, rows in groups.items():
            metric = self._metric(variant)
            prefix = metric.prefix if variant == IMAGES else f'{metric.prefix}/{variant}'
            scores.update({f'{prefix}/{k}': v for k, v in metric.compute_metrics(rows).items()})
        return scores
