"""Karpathy's COCO splits, ``dataset_coco.json``: one sample per image with all its captions, the splits
chosen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...registry import DATA_FORMATS
from .base import DataFormat, Record, Sample, caption_sample, expect_files, open_source


@DATA_FORMATS.register_module(name='karpathy')
class Karpathy(DataFormat):
    """Karpathy's ``dataset_coco.json`` (``images`` with ``filepath``, ``filename``, ``split``,
    ``sentences``, ``cocoid``), streamed. ``splits``: the splits to keep (comma-separated; default all);
    ``restval`` is written as ``train`` unless ``restval='restval'``."""

    def __init__(self, splits: str | None = None, restval: str = 'train') -> None:
        self.splits = None if splits is None else set(splits.split(','))
        self.restval = restval

    def records(self, sources: list[str]) -> Iterator[Record]:
        import ijson

        (path,) = expect_files(sources, 1, "Karpathy's dataset_coco.json")
        with open_source(path) as f:
            for n, image in enumerate(ijson.items(f, 'images.item')):
                split = self.restval if image['split'] == 'restval' else image['split']
                if self.splits is not None and image['split'] not in self.splits and split not in self.splits:
                    continue
                file = str(Path(image.get('filepath', '')) / image['filename'])
                data = {'file': file, 'captions': [s['raw'] for s in image.get('sentences', [])]}
                yield Record(
                    id=image.get('cocoid', image.get('imgid')),
                    where=f'{path} images[{n}]',
                    data=data,
                    split=split,
                )

    def to_sample(self, record: Record) -> Sample:
        return caption_sample(record)
