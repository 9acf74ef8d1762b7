"""Source formats -> vlkit's shards, streamed, in parallel, resumable (``tools/prepare_data.py``;
docs/data.md).

* **Deterministic sharding.** Records are numbered in the format's stream order; the n-th record of a
  split goes to shard ``n // shard_size`` of that split, under the key ``%09d`` of its number in the whole
  stream. A skipped record keeps its place, so which record lands in which shard, under which key, never
  depends on timing, workers or an interruption.
* **Streaming.** The main process reads the records (a single-array JSON through ``ijson``) and hands one
  shard's records at a time to a pool of workers, never more than ``2 x workers`` shards ahead; the
  workers read, identify and store the images. Memory stays flat in the dataset's size (the ids seen,
  kept for the duplicate check of a format whose ids are unique, are the only thing that grows).
* **Resumable.** A worker writes ``NAME.tar.tmp``, fsyncs and renames it to ``NAME.tar``, then writes the
  shard's counts to ``_progress/NAME.json``, the mark of a complete shard. A re-run keeps complete shards,
  redoes the others and removes leftover temporary files; a reader never takes a ``.tmp`` file.
* **Images by content.** Image bytes are read and decoded to check them, identified by their content (a
  GIF or PNG named ``.jpg`` is stored as ``.gif`` or ``.png``), and copied as they are unless ``resize``
  is set. Bad records are skipped and counted by reason (``missing_image``, ``corrupt_image``,
  ``duplicate_id`` where the format's ids are unique, the format's own reasons), or stop the conversion
  with ``strict``. In an interleaved document, a missing or bad image drops that image only (counted by
  reason under ``images_dropped``); the document is skipped when none of its images is left, as
  open_flamingo does (MMC4 and OBELICS ship URLs, and some always fail to download).
* **Manifest.** ``manifest.json`` (written last): counts, skips by reason, the splits' shards and sample
  counts, the source files' names and sizes; ``data_skips.json``: the counts and the skipped records.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .formats.base import BadRecord, DataFormat, Record, Sample

PROGRESS = '_progress'
IMAGE_FORMATS = {
    'JPEG': 'jpg',
    'MPO': 'jpg',
    'PNG': 'png',
    'GIF': 'gif',
    'WEBP': 'webp',
    'BMP': 'bmp',
    'TIFF': 'tiff',
}
MAX_LISTED_SKIPS = 1000  # skipped records (and dropped images) listed one by one in data_skips.json
DROPPED = object()  # a document position whose image could not be read


class ConversionError(RuntimeError):
    """A bad record met with ``strict``, naming it."""


@dataclass
class Options:
    images: str | None = None  # the folder that image paths are relative to
    resize: int | None = None  # shorter side in pixels, downscaling only
    strict: bool = False


@dataclass
class ShardJob:
    """One shard's records: ``(number in the stream, record, reason it is already known to be bad)``."""

    name: str
    entries: list[tuple[int, Record, str | None]] = field(default_factory=list)


def read_image(path: str, options: Options) -> tuple[bytes, str]:
    """The stored bytes of an image and their extension, by content (``missing_image``,
    ``corrupt_image`` otherwise)."""
    full = path if options.images is None or os.path.isabs(path) else os.path.join(options.images, path)
    try:
        with open(full, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        raise BadRecord(f'image {full} does not exist', reason='missing_image') from None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as err:  # noqa: BLE001 - PIL raises many types for a bad file
        raise BadRecord(
            f'image {full} does not decode: {type(err).__name__}: {err}', reason='corrupt_image'
        ) from None
    ext = IMAGE_FORMATS.get(image.format)
    if ext is None:
        raise BadRecord(
            f'image {full} is a {image.format}, not one of {sorted(IMAGE_FORMATS)}', reason='corrupt_image'
        )
    if options.resize and min(image.size) > options.resize:
        return _resized(image, options.resize, ext)
    return data, ext


def _resized(image: Image.Image, side: int, ext: str) -> tuple[bytes, str]:
    scale = side / min(image.size)
    image = image.convert('RGB').resize(
        (round(image.width * scale), round(image.height * scale)), Image.BICUBIC
    )
    out = io.BytesIO()
    if ext == 'jpg':
        image.save(out, format='JPEG', quality=95)
    else:
        image.save(out, format='PNG')
        ext = 'png'
    return out.getvalue(), ext


def sample_members(
    fmt: DataFormat, key: str, record: Record, options: Options
) -> tuple[list[tuple[str, bytes]], list[BadRecord]]:
    """The tar members of one record: ``KEY.json`` and its images (``KEY.EXT`` alone, ``KEY.i.EXT`` for
    several or in a document), and the images dropped from a document (their errors)."""
    sample = fmt.to_sample(record)
    document = 'texts' in sample.record
    if document:
        stored, images, dropped = document_images(sample, record, options)
    else:
        stored, images, dropped = sample.record, [read_image(path, options) for path in sample.images], []
    indexed = len(images) != 1 or document
    members = [(f'{key}.json', json.dumps(stored, ensure_ascii=False).encode())]
    for i, (data, ext) in enumerate(images):
        members.append((f'{key}.{i}.{ext}' if indexed else f'{key}.{ext}', data))
    return members, dropped


def document_images(sample: Sample, record: Record, options: Options) -> tuple[dict, list, list[BadRecord]]:
    """A document's record and images without the images that cannot be read (their positions removed),
    and those images' errors; raises where it had images and none is left, or on any with ``strict``."""
    texts, urls = list(sample.record['texts']), list(sample.record['images'])
    paths, images, dropped = iter(sample.images), [], []
    for position in [i for i, url in enumerate(urls) if url is not None]:
        path = next(paths)
        try:
            if isinstance(path, BadRecord):
                raise path
            images.append(read_image(path, options))
        except BadRecord as err:
            if options.strict:
                raise
            dropped.append(err)
            texts[position] = urls[position] = DROPPED
    if dropped and not images:
        raise BadRecord(
            f'{record.where}: none of its {len(dropped)} images could be read (the first: {dropped[0]})',
            reason=dropped[0].reason,
        )
    kept = [i for i, text in enumerate(texts) if text is not DROPPED]
    return (
        {**sample.record, 'texts': [texts[i] for i in kept], 'images': [urls[i] for i in kept]},
        images,
        dropped,
    )


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _skip_entry(key: str, record: Record, err: BadRecord) -> dict:
    """A skipped record, or a document's dropped image, as data_skips.json lists it."""
    return {'key': key, 'id': record.id, 'where': record.where, 'reason': err.reason, 'message': str(err)}


def write_shard(fmt: DataFormat, out: Path, job: ShardJob, options: Options) -> dict:
    """Writes one shard (module docstring) and returns its counts; raises :class:`ConversionError` on a
    bad record with ``strict``."""
    buffer, samples, skipped, skips = io.BytesIO(), 0, Counter(), []
    images_dropped, dropped_images = Counter(), []
    with tarfile.open(fileobj=buffer, mode='w', format=tarfile.USTAR_FORMAT) as tar:
        for number, record, known_bad in job.entries:
            key = f'{number:09d}'
            try:
                if known_bad is not None:
                    raise BadRecord(f'{record.where}: id {record.id!r} was seen before', reason=known_bad)
                members, dropped = sample_members(fmt, key, record, options)
            except BadRecord as err:
                if options.strict:
                    raise ConversionError(
                        f'record {key} (id {record.id!r}, {record.where}): {err.reason}: {err}'
                    ) from None
                skipped[err.reason] += 1
                skips.append(_skip_entry(key, record, err))
                continue
            images_dropped.update(err.reason for err in dropped)
            dropped_images.extend(_skip_entry(key, record, err) for err in dropped)
            for name, data in members:
                _add(tar, name, data)
            samples += 1
    _atomic_write(out / job.name, buffer.getvalue())
    stats = {
        'shard': job.name,
        'records': len(job.entries),
        'samples': samples,
        'skipped': dict(skipped),
        'skips': skips,
        'images_dropped': dict(images_dropped),
        'dropped_images': dropped_images,
    }
    _atomic_write(out / PROGRESS / f'{job.name}.json', json.dumps(stats).encode())
    return stats


def _is_complete(out: Path, name: str) -> bool:
    return (out / name).is_file() and (out / PROGRESS / f'{name}.json').is_file()


def shard_jobs(
    records: Iterator[Record], shard_size: int, max_records: int | None, unique_ids: bool = True
) -> Iterator[ShardJob]:
    """Records grouped into their shards (module docstring), each shard yielded once complete (the last
    of each split at the end); with ``unique_ids``, a repeated id marked ``duplicate_id``."""
    open_jobs: dict[str, ShardJob] = {}
    per_split: Counter[str] = Counter()
    seen: set[bytes] = set()
    for number, record in enumerate(records):
        if max_records is not None and number >= max_records:
            break
        index = per_split[record.split]
        per_split[record.split] += 1
        job = open_jobs.setdefault(record.split, ShardJob(f'{record.split}-{index // shard_size:05d}.tar'))
        known_bad = None
        if unique_ids and record.id is not None:  # compared by value and type: 5 and '5' are two ids
            digest = hashlib.blake2b(repr(record.id).encode(), digest_size=12).digest()
            known_bad = 'duplicate_id' if digest in seen else None
            seen.add(digest)
        job.entries.append((number, record, known_bad))
        if len(job.entries) == shard_size:
            yield open_jobs.pop(record.split)
    yield from open_jobs.values()


_WORKER: tuple | None = None


def _init_worker(fmt: DataFormat, out: Path, options: Options) -> None:
    global _WORKER
    _WORKER = (fmt, out, options)


def _run_job(job: ShardJob) -> dict:
    fmt, out, options = _WORKER
    return write_shard(fmt, out, job, options)


def convert(
    fmt: DataFormat,
    sources: list[str],
    out: str | os.PathLike,
    options: Options,
    shard_size: int = 1000,
    workers: int = 1,
    max_records: int | None = None,
    progress=None,
    description: dict | None = None,
) -> dict:
    """Converts ``sources`` into shards in ``out`` (module docstring); returns the manifest.

    Args:
        progress: a tqdm-like bar, advanced by records as shards complete.
        description: what the manifest records of the command (format name and options).
    """
    out = Path(out)
    (out / PROGRESS).mkdir(parents=True, exist_ok=True)
    (out / 'manifest.json').unlink(missing_ok=True)  # written again, last, when every shard is complete
    for leftover in [*out.glob('*.tmp'), *(out / PROGRESS).glob('*.tmp')]:
        leftover.unlink()
    start = time.perf_counter()
    jobs = shard_jobs(fmt.records(sources), shard_size, max_records, fmt.unique_ids)
    names, done = [], 0
    todo = _pending(jobs, out, names, progress)
    if workers <= 1:
        for job in todo:
            done += _count(progress, write_shard(fmt, out, job, options))
    else:
        # Pool.imap reads its input eagerly in a thread: the semaphore keeps the records of at most
        # 2 x workers shards in memory
        slots = threading.Semaphore(2 * workers)
        context = multiprocessing.get_context('fork')
        with context.Pool(workers, initializer=_init_worker, initargs=(fmt, out, options)) as pool:
            for stats in pool.imap(_run_job, _bounded(todo, slots), chunksize=1):
                slots.release()
                done += _count(progress, stats)
    manifest = write_manifest(out, sources, names, options, shard_size, description)
    manifest['seconds'] = round(time.perf_counter() - start, 1)
    return manifest


def _pending(jobs: Iterator[ShardJob], out: Path, names: list[str], progress) -> Iterator[ShardJob]:
    """The jobs whose shard is not complete yet; every shard's name is collected in ``names``."""
    for job in jobs:
        names.append(job.name)
        if _is_complete(out, job.name):
            if progress is not None:
                progress.update(len(job.entries))
            continue
        yield job


def _bounded(jobs: Iterator[ShardJob], slots: threading.Semaphore) -> Iterator[ShardJob]:
    for job in jobs:
        slots.acquire()
        yield job


def _count(progress, stats: dict) -> int:
    if progress is not None:
        progress.update(stats['records'])
    return stats['records']


def write_manifest(
    out: Path,
    sources: list[str],
    names: list[str],
    options: Options,
    shard_size: int,
    description: dict | None,
) -> dict:
    """``manifest.json`` and ``data_skips.json`` from the complete shards' counts."""
    stats = [json.loads((out / PROGRESS / f'{name}.json').read_text()) for name in names]
    splits: dict[str, dict] = {}
    skipped: Counter[str] = Counter()
    images_dropped: Counter[str] = Counter()
    for s in stats:
        split = splits.setdefault(s['shard'].rsplit('-', 1)[0], {'num_samples': 0, 'shards': []})
        split['num_samples'] += s['samples']
        split['shards'].append(s['shard'])
        skipped.update(s['skipped'])
        images_dropped.update(s.get('images_dropped', {}))
    manifest = {
        **(description or {}),
        'sources': [
            {'name': os.path.basename(p), 'path': os.path.abspath(p), 'bytes': os.path.getsize(p)}
            for p in sources
        ],
        'images': options.images,
        'resize': options.resize,
        'shard_size': shard_size,
        'num_records': sum(s['records'] for s in stats),
        'num_samples': sum(s['samples'] for s in stats),
        'skipped': dict(sorted(skipped.items())),
        'splits': splits,
    }
    if images_dropped:
        manifest['images_dropped'] = dict(sorted(images_dropped.items()))
    listed = [skip for s in stats for skip in s['skips']][:MAX_LISTED_SKIPS]
    dropped = [image for s in stats for image in s.get('dropped_images', [])][:MAX_LISTED_SKIPS]
    skips = {'skipped': manifest['skipped'], 'records': listed}
    if images_dropped:
        skips.update(images_dropped=dict(sorted(images_dropped.items())), dropped_images=dropped)
    _atomic_write(out / 'data_skips.json', json.dumps(skips, indent=2, ensure_ascii=False).encode())
    _atomic_write(out / 'manifest.json', json.dumps(manifest, indent=2, ensure_ascii=False).encode())
    return manifest
