"""k-shot in-context evaluation: demonstrations interleaved before every query (BLIP-3 Table 1, Flamingo).

A k-shot prompt is the multi-turn conversation ``demo_1, ..., demo_k, query``: each demonstration brings its
image, question and answer, then the query brings its image and question, and the model answers it. The
demonstrations are drawn with a fixed seed from a pool read from the train split.
"""

from __future__ import annotations

import itertools
import os.path as osp
import random
import zlib
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, IterableDataset

from ..data import sample_crops
from ..registry import DATASETS


def result_filename(
    split: str, shots: int, checkpoint: str, blank_images: bool = False, benchmark: str | None = None
) -> str:
    """The JSON file one evaluation writes into the work dir: benchmark (or ``accuracy``), split, shots and
    checkpoint in its name, e.g. ``accuracy_val_4shot_iter_1500.json``, ``vqav2_val_0shot_iter_1500.json``."""
    blank = '_blank' if blank_images else ''
    stem = osp.splitext(osp.basename(checkpoint))[0]
    return f'{benchmark or "accuracy"}_{split}_{shots}shot{blank}_{stem}.json'


def _build(dataset: dict | Dataset) -> Dataset:
    return DATASETS.build(dataset) if isinstance(dataset, dict) else dataset


@DATASETS.register_module()
class FewShotDataset(IterableDataset):
    """Puts ``shots`` demonstrations before every query of a conversation-style dataset.

    Works with any dataset whose samples follow the data contract of
    :class:`vlkit.data.ConversationShards`: the queries in ``mode='generate'`` (prompt ``input_ids``,
    ``answer``), the demonstrations in ``mode='train'`` (``input_ids`` of prompt, answer and end-of-sequence,
    and ``labels``). A demonstration's ids after the leading BOS are exactly what its turn adds to a
    multi-turn conversation (:func:`vlkit.data.templates.tokenize_conversation`), so a k-shot prompt is the
    tokenization of ``demo_1, ..., demo_k, query``, with each image's ``<image>`` marker in its turn.

    Args:
        dataset: the queries, a ``DATASETS`` config or a dataset (generate mode).
        demonstrations: where demonstrations come from, usually the train split (train mode).
        shots: demonstrations per query; 0 passes the queries through with their images stacked.
        seed: seed of the draw. A query's demonstrations depend only on the seed, the pool and the
            query's own ids and answer, not on the order or batch size.
        pool_size: how many samples are read from ``demonstrations`` to draw from (its first ones; a
            resampled train stream with a fixed seed yields the same ones every time, though under DDP each
            rank reads a stream of its own).
    """

    def __init__(
        self,
        dataset: dict | Dataset,
        demonstrations: dict | Dataset,
        shots: int,
        seed: int = 0,
        pool_size: int = 500,
    ) -> None:
        super().__init__()
        if shots < 0:
            raise ValueError(f'shots must be >= 0, got {shots}')
        if shots > pool_size:
            raise ValueError(f'shots={shots} needs pool_size >= {shots}, got pool_size={pool_size}')
        self.dataset = _build(dataset)
        self.demonstrations = demonstrations
        self.shots = shots
        self.seed = seed
        self.pool_size = pool_size
        self._pool: list[dict] | None = None
        tokenizer = getattr(self.dataset, 'tokenizer', None)
        self.bos_token_id = getattr(tokenizer, 'bos_token_id', None)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def question_only_prior(self) -> dict | None:
        return getattr(self.dataset, 'question_only_prior', None)

    def pool(self) -> list[dict]:
        """The demonstration pool, read once on first use."""
        if self._pool is None:
            source = _build(self.demonstrations)
            self._pool = list(itertools.islice(iter(source), self.pool_size))
            if len(self._pool) < self.shots:
                raise ValueError(
                    f'the demonstrations dataset yielded {len(self._pool)} samples, fewer than {self.shots=}'
                )
            if self._pool and 'labels' not in self._pool[0]:
                raise ValueError(
                    "demonstrations must be samples with their answers (mode='train': input_ids with the "
                    f'answer, and labels); got a sample with keys {sorted(self._pool[0])}'
                )
        return self._pool

    def draw(self, query: dict) -> list[dict]:
        """The query's demonstrations: ``shots`` distinct pool samples, seeded by the seed and the query."""
        if not self.shots:
            return []
        key = f'{self.seed}|{query["input_ids"]}|{query.get("answer")}'.encode()
        rng = random.Random(zlib.crc32(key))
        pool = self.pool()
        return [pool[i] for i in rng.sample(range(len(pool)), self.shots)]

    def _without_bos(self, ids: list[int]) -> list[int]:
        return ids[1:] if ids and self.bos_token_id is not None and ids[0] == self.bos_token_id else ids

    def with_demonstrations(self, query: dict) -> dict:
        """The query sample with its demonstrations' ids and images before its own."""
        demos = self.draw(query)
        turns = [*demos, query]
        ids = query['input_ids']
        head = ids[:1] if len(self._without_bos(ids)) < len(ids) else []
        crops, counts = zip(*map(sample_crops, turns), strict=True)
        sample = {k: v for k, v in query.items() if k not in ('image', 'images', 'crop_counts', 'input_ids')}
        sample['input_ids'] = head + [i for t in turns for i in self._without_bos(t['input_ids'])]
        sample['images'] = torch.cat(crops)
        sample['crop_counts'] = [n for c in counts for n in c]
        sample['shots'] = len(demos)
        return sample

    def __iter__(self) -> Iterator[dict]:
        for query in self.dataset:
            yield self.with_demonstrations(query)
