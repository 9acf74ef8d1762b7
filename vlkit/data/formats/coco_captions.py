"""COCO captions: ``captions_{train,val}2017.json`` (or 2014): one sample per image with all its captions
(``captions``); a dataset reading it draws one caption per read in training and scores against all of them
in evaluation.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from ...registry import DATA_FORMATS
from .base import (
    DataFormat,
    Record,
    Sample,
    caption_sample,
    coco_image_folder,
    expect_files,
    open_source,
    split_of,
)


@DATA_FORMATS.register_module(name='coco_captions')
class COCOCaptions(DataFormat):
    """``captions_*.json`` (``images`` + ``annotations``), or a test split's ``image_info_*.json`` (images
    only, captioned for a submission); the split is the file's (``train2017`` -> ``train``) unless
    ``split`` is given. An image's path under ``--images`` is its ``file_name`` in
    ``image_folder``, by default the folder COCO ships that file's images in, named as the file is
    (``captions_val2017.json`` -> ``val2017/000000179765.jpg``, ``captions_train2014.json`` ->
    ``train2014/COCO_train2014_....jpg``); ``image_folder=''`` takes the ``file_name`` as it is."""

    def __init__(self, split: str | None = None, image_folder: str | None = None) -> None:
        self.split = split
        self.image_folder = image_folder

    def records(self, sources: list[str]) -> Iterator[Record]:
        import ijson

        for path in expect_files(sources, len(sources), 'captions_*.json files'):
            match = re.match(r'(?:captions|image_info)_([a-z-]+)(\d{4})', Path(path).name)
            if match is None and self.image_folder is None:
                raise ValueError(
                    f'{path}: cannot tell its image folder from the name (COCO names it '
                    "captions_val2017.json, images in val2017/); pass --option image_folder=FOLDER, or '' "
                    'for file names under --images as they are'
                )
            folder = self.image_folder
            if folder is None:
                folder = coco_image_folder(match.group(1) + match.group(2))
            split = self.split or (split_of(match.group(1)) if match else 'train')
            captions = defaultdict(list)  # grouped per image: this file must be read whole once
            with open_source(path) as f:
                for ann in ijson.items(f, 'annotations.item'):
                    captions[ann['image_id']].append(ann['caption'])
            with open_source(path) as f:
                for n, image in enumerate(ijson.items(f, 'images.item')):
                    file = os.path.join(folder, image['file_name'])
                    data = {'file': file, 'captions': captions.pop(image['id'], [])}
                    yield Record(id=image['id'], where=f'{path} images[{n}]', data=data, split=split)

    def to_sample(self, record: Record) -> Sample:
        return caption_sample(record)
