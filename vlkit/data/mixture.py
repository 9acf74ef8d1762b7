"""Several training sources sampled by weight (MM1's 45% captions, 45% interleaved, 10% text-only).

Each draw picks a source with probability proportional to its weight, from a generator seeded by the
mixture's seed and the worker and rank, then takes that source's next sample. The sources' own streams are
deterministic under their seeds, so the mixed stream is too: MMEngine's ``IterBasedTrainLoop`` resumes by
replaying the stream from the start and skipping the batches already seen, and meets the same samples.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import webdataset as wds
from mmengine.logging import print_log
from torch.utils.data import IterableDataset

from ..registry import DATASETS
from .skips import SkipCounter


class MixtureSkips(SkipCounter):
    """The sources' skip counters seen as one (what ``DataSkipsHook`` reads), with the per-source draws."""

    def __init__(self, mixture: MixtureDataset) -> None:
        super().__init__()
        self.mixture = mixture

    def _counters(self) -> list[SkipCounter]:
        return [c for c in (getattr(d, 'skipped', None) for d in self.mixture.datasets) if c is not None]

    @property
    def counts(self) -> Counter:
        return sum((c.counts for c in self._counters()), Counter())

    @counts.setter
    def counts(self, value) -> None:  # SkipCounter.__init__ sets it; the sources hold the counts
        pass

    @property
    def shards(self) -> Counter:
        return sum((c.shards for c in self._counters()), Counter())

    @shards.setter
    def shards(self, value) -> None:
        pass

    @property
    def good(self) -> int:
        return sum(c.good for c in self._counters())

    @good.setter
    def good(self, value) -> None:
        pass

    def summary(self) -> dict:
        return {**super().summary(), 'sources': self.mixture.source_counts()}


@DATASETS.register_module()
class MixtureDataset(IterableDataset):
    """Samples several training datasets by weight, deterministically under ``seed`` (module docstring).

    Args:
        sources: ``[dict(name='captions', weight=0.45, dataset=dict(type=...)), ...]``; each dataset is a
            ``DATASETS`` config (or a dataset) in train mode, an endless stream.
        seed: seed of the draws.
        num_samples: the stream's nominal length (``len()``); default the sum of the sources' lengths.
        log_interval: samples between two log lines of the per-source counts (0: never).
    """

    def __init__(
        self, sources: list[dict], seed: int = 0, num_samples: int | None = None, log_interval: int = 1000
    ):
        super().__init__()
        if not sources:
            raise ValueError('MixtureDataset needs at least one source')
        names = [s.get('name', f'source{i}') for i, s in enumerate(sources)]
        weights = [s.get('weight') for s in sources]
        if len(set(names)) < len(names) or any(not isinstance(w, int | float) or w <= 0 for w in weights):
            raise ValueError(
                'MixtureDataset sources need distinct names and positive weights; '
                f'got {list(zip(names, weights, strict=True))}'
            )
        self.names = names
        self.weights = [w / sum(weights) for w in weights]
        self.datasets = [
            DATASETS.build(s['dataset']) if isinstance(s['dataset'], dict) else s['dataset'] for s in sources
        ]
        self.seed = seed
        self.num_samples = num_samples or sum(len(d) for d in self.datasets)
        self.log_interval = log_interval
        self.drawn = Counter()
        self.skipped = MixtureSkips(self)

    def __len__(self) -> int:
        return self.num_samples

    def source_counts(self) -> dict[str, int]:
        return {name: self.drawn[name] for name in self.names}

    def __iter__(self) -> Iterator[dict]:
        rng = random.Random(wds.utils.make_seed(wds.utils.pytorch_worker_seed(), self.seed))
        streams = [iter(d) for d in self.datasets]
        while True:
            (i,) = rng.choices(range(len(streams)), weights=self.weights)
            sample = next(streams[i])
            self.drawn[self.names[i]] += 1
            total = sum(self.drawn.values())
            if self.log_interval and total % self.log_interval == 0:
                shares = ', '.join(
                    f'{n} {c} ({100 * c / total:.1f}%)' for n, c in self.source_counts().items()
                )
                print_log(f'data mixture: {total} samples drawn; {shares}', logger='current')
            yield dict(sample, source=self.names[i])
