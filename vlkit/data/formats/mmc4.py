"""MMC4: JSON Lines documents (sentences + images matched to sentences) plus local images, stored as vlkit's
interleaved documents with each image before its matched sentence, as MMC4 and open_flamingo place them.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...registry import DATA_FORMATS
from .base import BadRecord, DataFormat, Record, Sample, document_sample, expect_files, stream_json


@DATA_FORMATS.register_module(name='mmc4')
class MMC4(DataFormat):
    """MMC4 documents (JSON Lines: ``text_list`` sentences and ``image_info`` entries with ``image_name``
    and ``matched_text_index``); each image is placed before its matched sentence, as MMC4 and
    open_flamingo do. Images are the ``image_name``s under ``--images``; ``min_similarity`` drops images
    whose ``matched_sim`` is below it."""

    def __init__(self, min_similarity: float | None = None) -> None:
        self.min_similarity = min_similarity

    def records(self, sources: list[str]) -> Iterator[Record]:
        for path in expect_files(sources, len(sources), 'MMC4 JSONL files'):
            for n, doc in stream_json(path):
                yield Record(id=None, where=f'{path}:{n + 1}', data=doc)

    def to_sample(self, record: Record) -> Sample:
        doc = record.data
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
        return document_sample(record, texts, images, [name for name in images if name is not None])
