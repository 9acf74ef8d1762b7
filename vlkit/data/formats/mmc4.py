"""MMC4: JSON Lines documents (sentences + images matched to sentences) plus local images, stored as vlkit's
interleaved documents with each image before its matched sentence, as MMC4 and open_flamingo place them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ...registry import DATA_FORMATS
from .base import (
    BadRecord,
    DataFormat,
    Record,
    Sample,
    document_sample,
    expect_files,
    source_stem,
    stream_json,
)


@DATA_FORMATS.register_module(name='mmc4')
class MMC4(DataFormat):
    """MMC4 documents (JSON Lines: ``text_list`` sentences and ``image_info`` entries with ``image_name``
    and ``matched_text_index``); each image is placed before its matched sentence, as MMC4 and
    open_flamingo do. ``min_similarity`` drops images whose ``matched_sim`` is below it.

    Images are the ``image_name``s under ``--images``, in ``image_folder`` there: ``''`` (the images of
    every file in one folder), or a pattern of ``{shard}``, the JSONL file's name without ``.jsonl`` (or
    ``.jsonl.zip``, as MMC4 ships them; read through):
    ``'{shard}_images'`` is where MMC4's ``scripts/download_images.py`` puts each file's images by default
    (``docs_no_face_shard_0_v3.jsonl`` -> ``docs_no_face_shard_0_v3_images/``)."""

    def __init__(self, min_similarity: float | None = None, image_folder: str = '') -> None:
        self.min_similarity = min_similarity
        try:
            image_folder.format(shard='docs_shard_0')
        except (AttributeError, KeyError, IndexError, ValueError) as err:
            raise ValueError(
                f"image_folder {image_folder!r} may hold only {{shard}} (the JSONL file's name), e.g. "
                f"'{{shard}}_images'; it failed with {err!r}"
            ) from None
        self.image_folder = image_folder

    def records(self, sources: list[str]) -> Iterator[Record]:
        for path in expect_files(sources, len(sources), 'MMC4 JSONL files'):
            folder = self.image_folder.format(shard=source_stem(path))
            for n, doc in stream_json(path):
                yield Record(id=None, where=f'{path}:{n + 1}', data=(folder, doc))

    def to_sample(self, record: Record) -> Sample:
        folder, doc = record.data
        if isinstance(doc, Exception):
            raise doc
        sentences = doc.get('text_list') or []
        infos = [
            i
            for i in doc.get('image_info') or []
            if self.min_similarity is None or i.get('matched_sim', 0) >= self.min_similarity
        ]
        before = {}
        for info in sorted(infos, key=lambda i: i['matched_text_index']):
            if not 0 <= info['matched_text_index'] < len(sentences):
                raise BadRecord(
                    f'{record.where}: image {info["image_name"]} matches no sentence', reason='bad_document'
                )
            before.setdefault(info['matched_text_index'], []).append(info['image_name'])
        texts, images = [], []
        for i, sentence in enumerate(sentences):
            for name in before.get(i, []):
                texts.append(None)
                images.append(name)
            texts.append(sentence if i == 0 else f' {sentence}')
            images.append(None)
        paths = [os.path.join(folder, name) for name in images if name is not None]
        return document_sample(record, texts, images, paths)
