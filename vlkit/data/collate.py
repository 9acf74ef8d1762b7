"""The batch contract (docs/architecture.md): samples padded into a batch of images, ids, masks, labels."""

from __future__ import annotations

import torch

from ..constants import IGNORE_INDEX
from ..registry import FUNCTIONS


def _pad(seqs: list[list[int]], value: int, left: bool) -> torch.Tensor:
    width = max(map(len, seqs))
    rows = [[value] * (width - len(s)) + s if left else s + [value] * (width - len(s)) for s in seqs]
    return torch.tensor(rows, dtype=torch.long)


def sample_crops(sample: dict) -> tuple[torch.Tensor, list[int]]:
    """A sample's image crops [C, 3, H, W] and crops per image: one ``image``, or ``images`` with
    ``crop_counts`` (several images, any-resolution crops; one crop per image when absent)."""
    if 'image' in sample:
        return sample['image'][None], [1]
    if 'images' in sample:
        images = sample['images']
        return images, list(sample.get('crop_counts', [1] * len(images)))
    raise KeyError(f"a sample needs 'image' or 'images'; it has {sorted(sample)}")


@FUNCTIONS.register_module()
def vlm_collate(samples: list[dict]) -> dict:
    """Pads a list of samples into a batch (docs/architecture.md, "The batch"): right padding for training,
    left for generation.

    ``images`` holds every sample's images (their crops, with any-resolution encoding) in order, and
    ``image_counts`` the number of images per sample; ``crop_counts`` (crops per image) is added when an
    image has more than one crop; ``metas`` (the samples' ``meta``: question and image ids) when a sample
    has one. Keys beginning with ``__`` are dropped.
    """
    generating = 'labels' not in samples[0]
    ids = [s['input_ids'] for s in samples]
    crops, crop_counts = zip(*map(sample_crops, samples), strict=True)
    batch = {
        'images': torch.cat(crops),
        'image_counts': torch.tensor([len(c) for c in crop_counts], dtype=torch.long),
        'input_ids': _pad(ids, 0, left=generating),
        'attention_mask': _pad([[1] * len(i) for i in ids], 0, left=generating),
    }
    flat_counts = [n for counts in crop_counts for n in counts]
    if any(n != 1 for n in flat_counts):
        batch['crop_counts'] = torch.tensor(flat_counts, dtype=torch.long)
    if generating:
        batch['answers'] = [s['answer'] for s in samples]
    else:
        batch['labels'] = _pad([s['labels'] for s in samples], IGNORE_INDEX, left=False)
    batch['tasks'] = [s.get('task') for s in samples]
    if any('variant' in s for s in samples):  # which evaluation a sample belongs to (blank-image copies)
        batch['variants'] = [s.get('variant') for s in samples]
    if any('meta' in s for s in samples):  # ids for benchmark submission files, answer types
        batch['metas'] = [s.get('meta') for s in samples]
    return batch
