"""COCO captions: ``captions_{train,val}2017.json`` (or 2014), and Karpathy's ``dataset_coco.json``.

One sample per image: its file, ``image_id`` and every caption (``captions``); a dataset reading it draws
one caption per read in training and scores against all of them in evaluation.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from ...registry import DATA_FORMATS
from .base import BadRecord, DataFormat, Record, Sample, expect_files


def _caption_sample(record: Record) -> Sample:
    captions = [c.strip() for c in record.data['captions'] if isinstance(c, str) and c.strip()]
    if not captions:
        raise BadRecord(f'{record.where}: image {record.id} has no caption', reason='empty_conversation')
    stored = {'id': record.id, 'image_id': record.id, 'captions': captions, 'task': 'caption'}
    return Sample(stored, [record.data['file']])


@DATA_FORMATS.register_module(name='coco_captions')
class COCOCaptions(DataFormat):
    """``captions_*.json`` (``images`` + ``annotations``); the split is the file's (``train2017`` ->
    ``train``) unless ``split`` is given. Image paths are the ``file_name``s, under ``--images``."""

    def __init__(self, split: str | None = None) -> None:
        self.split = split

    def records(self, sources: list[str]) -> Iterator[Record]:
        import ijson

        for path in expect_files(sources, len(sources), 'captions_*.json files'):
            match = re.match(r'captions_([a-z]+)', Path(path).name)
            split = self.split or (match.group(1) if match else 'train')
            captions = defaultdict(list)  # grouped per image: this file must be read whole once
            with open(path, 'rb') as f:
                for ann in ijson.items(f, 'annotations.item'):
                    captions[ann['image_id']].append(ann['caption'])
            with open(path, 'rb') as f:
                for n, image in enumerate(ijson.items(f, 'images.item')):
                    data = {'file': image['file_name'], 'captions': captions.pop(image['id'], [])}
                    yield Record(id=image['id'], where=f'{path} images[{n}]', data=data, split=split)

    def to_sample(self, record: Record) -> Sample:
        return _caption_sample(record)


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
        with open(path, 'rb') as f:
            for n, image in enumerate(ijson.items(f, 'images.item')):
                split = self.restval if image['split'] == 'restval' else image['split']
                if self.splits is not None and image['split'] not in self.splits and split not in self.splits:
                    continue
                file = str(Path(image.get('filepath', '')) / image['filename'])
                data = {'file': file, 'captions': [s['raw'] for s in image.get('sentences', [])]}
                yield Record(id=image.get('cocoid', image.get('imgid')), where=f'{path} images[{n}]', data=data, split=split)

    def to_sample(self, record: Record) -> Sample:
        return _caption_sample(record)
