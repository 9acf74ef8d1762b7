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

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

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
    markers (paths relative to ``--images``, or absolute)."""

    record: dict
    images: list[str] = field(default_factory=list)


class BadRecord(SampleError):
    """A record that breaks its format, with the reason it is counted under."""


class DataFormat:
    """Base class of the source formats (module docstring). Constructor arguments are the format's
    options (``tools/prepare_data.py --option key=value``)."""

    def records(self, sources: list[str]) -> Iterator[Record]:
        raise NotImplementedError

    def to_sample(self, record: Record) -> Sample:
        raise NotImplementedError


def stream_json(path: str) -> Iterator[tuple[int, Any]]:
    """``(index, item)`` of a JSON file holding one array (streamed with ``ijson``: memory stays flat in the
    file's size) or of a JSON Lines file (one item per line)."""
    with open(path, 'rb') as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if head.startswith(b'['):
            import ijson

            yield from enumerate(ijson.items(f, 'item', use_float=True))
            return
        for n, line in enumerate(f):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as err:
                    yield n, BadRecord(f'{path}:{n + 1}: not JSON ({err})', reason='bad_json')


def load_json(path: str) -> Any:
    """A whole JSON file, for the formats whose layout is a dict that must be read whole (small files:
    annotations keyed by id)."""
    with open(path, 'rb') as f:
        return json.load(f)


def expect_files(sources: Iterable[str], count: int, what: str) -> list[str]:
    sources = list(sources)
    if len(sources) != count:
        raise ValueError(f'expected {count} source file(s), {what}; got {sources}')
    for path in sources:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'source file {path} does not exist')
    return sources
