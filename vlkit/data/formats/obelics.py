"""OBELICS: parquet rows of aligned ``images`` (URLs) and ``texts``, stored as vlkit's interleaved documents.
Nothing is fetched: URLs resolve to local files (:class:`.base.UrlImages`).
"""

from __future__ import annotations

from collections.abc import Iterator

from ...registry import DATA_FORMATS
from .base import DataFormat, Record, Sample, UrlImages, document_sample, expect_files


@DATA_FORMATS.register_module(name='obelics')
class OBELICS(DataFormat):
    """OBELICS parquet files: rows with aligned ``images`` (URLs or null) and ``texts`` (or null), read in
    row batches (``pyarrow``); ``url_map`` or ``by_file_name`` says where a URL's image is
    (:class:`.base.UrlImages`; a URL the ``url_map`` lacks is a missing image, which drops that image)."""

    def __init__(self, url_map: str | None = None, by_file_name: bool = False, batch_rows: int = 256) -> None:
        self.urls = UrlImages(url_map, by_file_name)
        self.batch_rows = batch_rows

    def records(self, sources: list[str]) -> Iterator[Record]:
        import pyarrow.parquet as pq

        for path in expect_files(sources, len(sources), 'OBELICS parquet files'):
            n = 0
            for batch in pq.ParquetFile(path).iter_batches(
                batch_size=self.batch_rows, columns=['images', 'texts']
            ):
                for row in batch.to_pylist():
                    yield Record(id=None, where=f'{path} row {n}', data=row)
                    n += 1

    def to_sample(self, record: Record) -> Sample:
        images, texts = record.data.get('images'), record.data.get('texts')
        paths = [self.urls.path_of(url) for url in images or [] if url is not None]
        return document_sample(record, texts, images, paths)
