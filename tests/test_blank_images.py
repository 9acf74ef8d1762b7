"""--compare-blank in one pass: every question with its images and with blank ones in the same batches, each
variant scored on its own."""

from __future__ import annotations

import pytest
import torch

from vlkit.data import vlm_collate
from vlkit.evaluation import BlankImagePairs
from vlkit.registry import METRICS


class _Questions(torch.utils.data.IterableDataset):
    def __iter__(self):
        for i in range(3):
            yield {
                'input_ids': [1, 2 + i],
                'answer': str(i),
                'task': 'count',
                'image': torch.ones(3, 4, 4) * (i + 1),
            }

    def __len__(self):
        return 3


def test_each_sample_is_followed_by_its_blank_copy():
    samples = list(BlankImagePairs(_Questions()))
    assert len(samples) == 6 == len(BlankImagePairs(_Questions()))
    assert [s['variant'] for s in samples] == ['images', 'blank images'] * 3
    for real, blank in zip(samples[::2], samples[1::2], strict=True):
        assert real['input_ids'] == blank['input_ids'] and real['answer'] == blank['answer']
        assert (real['image'] != 0).all() and (blank['image'] == 0).all()  # blank: normalised mid-grey
    batch = vlm_collate(samples[:4])
    assert batch['variants'] == ['images', 'blank images', 'images', 'blank images']


def test_by_variant_scores_each_variant_with_its_own_metric():
    metric = METRICS.build(dict(type='ByVariant', metric=dict(type='ExactMatchAccuracy')))
    rows = [
        dict(prediction='red', answer='red', task='colour', variant='images'),
        dict(prediction='red', answer='blue', task='colour', variant='blank images'),
        dict(prediction='two', answer='two', task='count', variant='images'),
        dict(prediction='two', answer='two', task='count', variant='blank images'),
        dict(prediction='one', answer='two', task='count', variant='images'),
        dict(prediction='three', answer='two', task='count', variant='blank images'),
    ]
    metric.process({}, rows[:3])
    metric.process({}, rows[3:])
    assert metric.evaluate(6) == pytest.approx(
        {
            'exact_match/colour': 100.0, 'exact_match/count': 50.0, 'exact_match/overall': 75.0,
            'exact_match/blank images/colour': 0.0, 'exact_match/blank images/count': 50.0,
            'exact_match/blank images/overall': 25.0,
        }
    )  # fmt: skip
