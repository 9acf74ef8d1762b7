"""COCO captions: ``captions_{train,val}2017.json`` (or 2014): one sample per image with all its captions
(``captions``); a dataset reading it draws one caption per read in training and scores against all of them
in evaluation.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from ...registry import DATA_FORMATS
from .base import DataFormat, Record, Sample, caption_sample, expect_files


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
        return caption_sample(record)
