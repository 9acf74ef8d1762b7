"""Interleaved image-text documents: OBELICS (parquet) and MMC4 (JSON Lines), stored as vlkit's
documents (``KEY.json`` with aligned ``texts``/``images`` + ``KEY.0.<image>``, ...; docs/data.md).

Nothing is fetched: image URLs are resolved to local files through ``url_map`` (a JSON file
``{url: path}``) or, without one, to the URL's file name under ``--images`` (as a downloader that keeps
file names leaves them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from urllib.parse import urlparse

from ...registry import DATA_FORMATS
from .base import BadRecord, DataFormat, Record, Sample, expect_files, stream_json


class _UrlImages:
    def __init__(self, url_map: str | None) -> None:
        self.url_map_path = url_map
        self._map = None

    def path_of(self, url: str) -> str:
        if self.url_map_path is not None:
            if self._map is None:
                with open(self.url_map_path) as f:
                    self._map = json.load(f)
            if url not in self._map:
                raise BadRecord(f'image {url} is not in the url_map {self.url_map_path}', reason='missing_image')
            return self._map[url]
        return os.path.basename(urlparse(url).path)


def document_sample(record: Record, texts: list, images: list, paths: list[str]) -> Sample:
    """A checked document: at each position exactly one of text and image (``empty_position`` when both
    are null, ``bad_document`` otherwise)."""
    if not isinstance(texts, list) or not isinstance(images, list) or len(texts) != len(images):
        raise BadRecord(f'{record.where}: "texts" and "images" must be lists of equal length', reason='bad_document')
    for i, (text, image) in enumerate(zip(texts, images, strict=True)):
        if text is None and image is None:
            raise BadRecord(f'{record.where}: position {i} has neither text nor image', reason='empty_position')
        if text is not None and image is not None:
            raise BadRecord(f'{record.where}: position {i} has both a text and an image', reason='bad_document')
    if not any(t is not None and t.strip() for t in texts):
        raise BadRecord(f'{record.where}: the document has no text', reason='empty_conversation')
    stored = {'texts': texts, 'images': images}
    if record.id is not None:
        stored['id'] = record.id
    return Sample(stored, paths)


@DATA_FORMATS.register_module(name='obelics')
class OBELICS(DataFormat):
    """OBELICS parquet files: rows with aligned ``images`` (URLs or null) and ``texts`` (or null), read in
    row batches (``pyarrow``)."""

    def __init__(self, url_map: str | None = None, batch_rows: int = 256) -> None:
        self.urls = _UrlImages(url_map)
        self.batch_rows = batch_rows

    def records(self, sources: list[str]) -> Iterator[Record]:
        import pyarrow.parquet as pq

        for path in expect_files(sources, len(sources), 'OBELICS parquet files'):
            n = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=self.batch_rows, columns=['images', 'texts']):
                for row in batch.to_pylist():
                    yield Record(id=None, where=f'{path} row {n}', data=row)
                    n += 1

    def to_sample(self, record: Record) -> Sample:
        images, texts = record.data.get('images'), record.data.get('texts')
        paths = [self.urls.path_of(url) for url in images or [] if url is not None]
        return document_sample(record, texts, images, paths)


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
        infos = [i for i in doc.get('image_info') or [] if self.min_similarity is None or i.get('matched_sim', 0) >= self.min_similarity]
        before = {}
        for info in sorted(infos, key=lambda i: i['matched_text_index']):
            if not 0 <= info['matched_text_index'] < len(sentences):
                raise BadRecord(f'{record.where}: image {info["image_name"]} matches no sentence', reason='bad_document')
            before.setdefault(info['matched_text_index'], []).append(info['image_name'])
        texts, images = [], []
        for i, sentence in enumerate(sentences):
            for name in before.get(i, []):
                texts.append(None)
                images.append(name)
            texts.append(sentence if i == 0 else f' {sentence}')
            images.append(None)
        return document_sample(record, texts, images, [name for name in images if name is not None])
