"""The data-format contract: what ``tools/prepare_data.py`` asks of a source format (docs/data.md).

A format streams a source's records in a fixed order (:meth:`DataFormat.records`; a big single-array JSON
through ``ijson``, never loaded whole) and turns each into a :class:`Sample` to store
(:meth:`DataFormat.to_sample`): its ``KEY.json`` record and the paths of its images, in order. A record
that breaks the format raises :class:`BadRecord` with a reason; the converter skips and counts it (or stops,
with ``--strict``), and reads, identifies and stores the images (:mod:`vlkit.data.conversion`).

A format of your own::

    @DATA_FORMATS.register_module()
    class MyFormat(DataFormat):
        def records(self, sources):
            for path in sources:
                for n, row in enumerate(read_rows(path)):
                    yield Record(id=row['id'], where=f'{path}:{n}', data=row)

        def to_sample(self, record):
            return Sample({'conversations': ...}, [record.data['image']])
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from ..skips import SampleError


@dataclass
class Record:
    """One record of a source: its own id (int, str or None), where it is (for messages), its split and
    the fields ``to_sample`` needs (small and picklable: it travels to a worker process)."""

    id: Any
    where: str
    data: Any
    split: str = 'train'


@dataclass
class Sample:
    """What to store for a record: ``KEY.json`` and the image files, in the order of its ``<image>``
    markers (paths relative to ``--images``, or absolute). In a document, an image that cannot be located
    is its :class:`BadRecord` instead: the conversion drops that image, not the document."""

    record: dict
    images: list[str | BadRecord] = field(default_factory=list)


class BadRecord(SampleError):
    """A record that breaks its format, with the reason it is counted under."""


class DataFormat:
    """Base class of the source formats (module docstring). Constructor arguments are the format's
    options (``tools/prepare_data.py --option key=value``).

    ``unique_ids``: a record's id names that record alone (a question id), so a repeated id is a
    ``duplicate_id`` and skipped; a format whose ids name something records share (LLaVA's name the
    image) sets it False and keeps every record.
    """

    unique_ids = True

    def records(self, sources: list[str]) -> Iterator[Record]:
        raise NotImplementedError

    def to_sample(self, record: Record) -> Sample:
        raise NotImplementedError


COMPRESSED_SUFFIXES = ('.zip', '.gz')


@contextlib.contextmanager
def open_source(path: str) -> Iterator[IO[bytes]]:
    """``path`` open for reading bytes. A gzip file, or a zip archive that holds one file (MMC4 ships its
    documents as ``docs_shard_N_v3.jsonl.zip``, VQAv2 its questions as ``.zip``), is read through, told by
    its first bytes rather than its name."""
    with open(path, 'rb') as f:
        magic = f.read(4)
    if magic.startswith(b'\x1f\x8b'):
        with gzip.open(path, 'rb') as f:
            yield f
    elif magic == b'PK\x03\x04':
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith('/')]
            if len(members) != 1:
                raise ValueError(
                    f'{path}: a zipped source must hold exactly one file (the JSON or JSON Lines to read); '
                    f'it holds {len(members)}: {members[:5]}. Unzip it and give the file to read.'
                )
            with archive.open(members[0]) as f:
                yield f
    else:
        with open(path, 'rb') as f:
            yield f


def source_stem(path: str) -> str:
    """The source file's name without its compression suffix and its extension:
    ``docs_shard_0_v3.jsonl.zip`` -> ``docs_shard_0_v3``."""
    name = Path(path).name
    for suffix in COMPRESSED_SUFFIXES:
        name = name.removesuffix(suffix)
    return Path(name).stem


def stream_json(path: str) -> Iterator[tuple[int, Any]]:
    """``(index, item)`` of a JSON file holding one array (streamed with ``ijson``: memory stays flat in the
    file's size) or of a JSON Lines file (one item per line); either may be compressed (:func:`open_source`).
    A line that is not JSON, or not UTF-8, comes as a :class:`BadRecord` in its place."""
    with open_source(path) as f:
        head = f.read(4096).lstrip()
        f.seek(0)  # gzip and zip members rewind too
        if head.startswith(b'['):
            import ijson

            yield from enumerate(ijson.items(f, 'item', use_float=True))
            return
        for n, line in enumerate(f):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except ValueError as err:  # JSONDecodeError, or UnicodeDecodeError on bytes not UTF-8
                    yield n, BadRecord(f'{path}:{n + 1}: not JSON ({err})', reason='bad_json')


def load_json(path: str) -> Any:
    """A whole JSON file, for the formats whose layout is a dict that must be read whole (small files:
    annotations keyed by id); it may be compressed (:func:`open_source`)."""
    with open_source(path) as f:
        return json.load(f)


def expect_files(sources: Iterable[str], count: int, what: str) -> list[str]:
    sources = list(sources)
    if len(sources) != count:
        raise ValueError(f'expected {count} source file(s), {what}; got {sources}')
    for path in sources:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'source file {path} does not exist')
    return sources


TEST_SPLITS = ('test', 'test-dev')  # splits whose answers and captions are withheld


def coco_image_folder(subtype: str) -> str:
    """The folder COCO ships a split's images in: ``val2014`` -> ``val2014``; ``test-dev2015``, a subset of
    test2015's questions, -> ``test2015``."""
    return subtype.replace('test-dev', 'test')


def caption_sample(record: Record) -> Sample:
    """One image with all its captions (``captions``), ``image_id`` and the task ``caption``; an image
    without captions is kept in a test split (to caption for a submission) and skipped in any other."""
    captions = [c.strip() for c in record.data['captions'] if isinstance(c, str) and c.strip()]
    if not captions and record.split not in TEST_SPLITS:
        raise BadRecord(f'{record.where}: image {record.id} has no caption', reason='empty_conversation')
    stored = {'id': record.id, 'image_id': record.id, 'captions': captions, 'task': 'caption'}
    return Sample(stored, [record.data['file']])


SPLIT_NAMES = {'train': 'train', 'val': 'val', 'test': 'test', 'testdev': 'test-dev', 'test-dev': 'test-dev'}


def split_of(name: str) -> str:
    """``val2014`` -> ``val``, ``test-dev2015`` -> ``test-dev``."""
    return SPLIT_NAMES.get(re.sub(r'\d+$', '', name), name)


def qa_sample(record: Record, image: str) -> Sample:
    """A question record (``question``, ``answer``, ``answers``, ids, ``task``) with its image."""
    data = record.data
    if not isinstance(data.get('question'), str) or not data['question'].strip():
        raise BadRecord(f'{record.where}: question {record.id} has no text', reason='empty_conversation')
    return Sample({k: v for k, v in data.items() if v is not None and k != 'image_file'}, [image])


def answer_texts(answers) -> list[str]:
    """Human answers as texts (VQA-style ``{'answer': ...}`` entries or plain strings)."""
    return [a['answer'] if isinstance(a, dict) else str(a) for a in answers or []]


class UrlImages:
    """Image URLs to local files: through a ``url_map`` JSON file (``{url: path}``), or, with
    ``by_file_name``, the URL's file name under ``--images``. One of the two must be chosen: file names
    are a guess that is wrong wherever two URLs end in the same name (``.../image.jpg``,
    ``photo.php?id=1`` and ``?id=2``), which would silently give a document another page's image."""

    def __init__(self, url_map: str | None, by_file_name: bool = False) -> None:
        if not isinstance(by_file_name, bool):
            raise ValueError(f'by_file_name must be true or false, got {by_file_name!r}')
        if url_map is None and not by_file_name:
            raise ValueError(
                'image URLs need a url_map (--option url_map=FILE, a JSON {url: local path}, e.g. from your '
                "downloader's records), or --option by_file_name=true to look for each URL's file name under "
                '--images, which is right only where no two URLs end in the same file name'
            )
        self.url_map_path = url_map
        self._map = None

    def path_of(self, url: str) -> str | BadRecord:
        """The local file of ``url``, or the ``missing_image`` error of a URL the ``url_map`` lacks."""
        if self.url_map_path is not None:
            if self._map is None:
                with open(self.url_map_path) as f:
                    self._map = json.load(f)
            if url not in self._map:
                return BadRecord(
                    f'image {url} is not in the url_map {self.url_map_path}', reason='missing_image'
                )
            return self._map[url]
        return os.path.basename(urlparse(url).path)


def document_sample(record: Record, texts: list, images: list, paths: list[str]) -> Sample:
    """A checked document: at each position exactly one of text and image (``empty_position`` when both
    are null, ``bad_document`` otherwise)."""
    if not isinstance(texts, list) or not isinstance(images, list) or len(texts) != len(images):
        raise BadRecord(
            f'{record.where}: "texts" and "images" must be lists of equal length', reason='bad_document'
        )
    for i, (text, image) in enumerate(zip(texts, images, strict=True)):
        if text is None and image is None:
            raise BadRecord(
                f'{record.where}: position {i} has neither text nor image', reason='empty_position'
            )
        if text is not None and image is not None:
            raise BadRecord(
                f'{record.where}: position {i} has both a text and an image', reason='bad_document'
            )
    if not any(t is not None and t.strip() for t in texts):
        raise BadRecord(f'{record.where}: the document has no text', reason='empty_conversation')
    stored = {'texts': texts, 'images': images}
    if record.id is not None:
        stored['id'] = record.id
    return Sample(stored, paths)
