"""The data path's speed and memory: conversion, reading, and the converter's memory against the data's size.

    python benchmarks/data.py [--records 2000] [--large 20000] [--workers 2] [--read 1000] [--no-save]

In one run, on a LLaVA-format source that it makes (photos-like JPEGs of 256 x 192 px, two-turn
conversations):

* **conversion**: ``tools/prepare_data.py llava`` with ``--workers``, in images per second;
* **reader**: ``PreparedShards`` (chat template with labels, 64 px images) through a ``DataLoader`` with one
  worker process (which decodes with its default ``decode_threads``, docs/data.md; and with none, to show
  what the threads give), in samples per second,
  beside a single-process plain Python loop doing the same decode + tokenize (and batching) from the source
  (the JSON and the image files), in one thread: the reader should be at least as fast (each measured
  three times, alternated, the best kept; the reader also with ``num_workers=0``, in the calling process,
  which shows the cost of the worker's hand-over apart from the reading);
* **converter memory**: the peak resident memory of a conversion (one process) of ``--records`` and of
  ``--large`` records: flat in the data's size, within 10%.

The table, with the machine, is appended to benchmarks/RESULTS.md (``--no-save``: printed only).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.connectors import publish  # noqa: E402

WORDS = 'a photo of the red blue green bus dog cat on street beach sofa what is in the image describe it'
IMAGE_SIZE = 64
ROUNDS = 3


def make_source(folder: Path, records: int, distinct_images: int = 200) -> Path:
    """``records`` LLaVA records over ``distinct_images`` JPEGs of noise and shapes; returns the JSON."""
    import numpy as np
    from PIL import Image

    rng = random.Random(0)
    (folder / 'images').mkdir(parents=True, exist_ok=True)
    for i in range(distinct_images):
        pixels = np.random.default_rng(i).integers(0, 255, (192, 256, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / 'images' / f'{i}.jpg', quality=90)
    words = WORDS.split()
    data = [
        {
            'id': n,
            'image': f'{n % distinct_images}.jpg',
            'conversations': [
                {'from': 'human', 'value': '<image>\ndescribe the image'},
                {'from': 'gpt', 'value': ' '.join(rng.choices(words, k=12))},
            ],
        }
        for n in range(records)
    ]
    path = folder / f'llava_{records}.json'
    path.write_text(json.dumps(data))
    return path


def convert(source: Path, images: Path, out: Path, workers: int) -> dict:
    """Runs tools/prepare_data.py in a process of its own; returns its wall seconds and peak RSS (MiB)."""
    script = (
        'import resource, sys, time; sys.argv = sys.argv[1:]; t = time.perf_counter(); '
        'import runpy; runpy.run_path(sys.argv[0], run_name="__main__"); '
        'print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t)'
    )
    cmd = [sys.executable, '-c', script, str(ROOT / 'tools' / 'prepare_data.py'), 'llava', str(source)]
    cmd += ['--images', str(images), '--out', str(out), '--workers', str(workers)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith('PEAK'))
    _, kib, seconds = line.split()
    return {'seconds': float(seconds), 'peak_mib': int(kib) / 1024}


def tokenizer_dir(folder: Path) -> str:
    from vlkit.testing import chatml_tokenizer

    tok = chatml_tokenizer([WORDS] * 20)
    tok.save_pretrained(str(folder / 'tokenizer'))
    return str(folder / 'tokenizer')


def read_with_reader(
    data: Path, tokenizer: str, samples: int, workers: int = 1, decode_threads: int | None = None
) -> float:
    """Samples per second of PreparedShards through a DataLoader (batches of 32) with ``workers`` worker
    processes (0: in the calling process), decoding with ``decode_threads`` (``None``: its default)."""
    from torch.utils.data import DataLoader

    from vlkit.data import PreparedShards, vlm_collate

    dataset = PreparedShards(
        str(data),
        tokenizer=tokenizer,
        image_size=IMAGE_SIZE,
        mode='train',
        template='chat',
        shuffle_buffer=100,
        **({} if decode_threads is None else {'decode_threads': decode_threads}),
    )
    loader = DataLoader(dataset, batch_size=32, num_workers=workers, collate_fn=vlm_collate)
    batches = iter(loader)
    next(batches)  # the worker's start
    start = time.perf_counter()
    for _ in range(samples // 32):
        next(batches)
    return (samples // 32) * 32 / (time.perf_counter() - start)


def read_plain(source: Path, images: Path, tokenizer: str, samples: int) -> float:
    """Samples per second of a plain loop: the JSON's records, each image file decoded, resized and
    normalised, each conversation tokenized with its labels, every 32 samples padded into a batch (what the
    reader's data loader hands over too), in this one process."""
    from PIL import Image

    from vlkit.data import vlm_collate
    from vlkit.data.chat import to_messages, tokenize_chat
    from vlkit.data.transforms import image_to_tensor
    from vlkit.tokenization import build_tokenizer

    tok = build_tokenizer(tokenizer)
    records = json.loads(source.read_text())
    start, batch = time.perf_counter(), []
    for record in itertools.islice(itertools.cycle(records), samples // 32 * 32):
        key = str(record['id'])
        sample = tokenize_chat(tok, 'chat', to_messages(record['conversations'], key), key)
        with Image.open(images / record['image']) as image:
            sample['image'] = image_to_tensor(image, IMAGE_SIZE)
        batch.append(sample)
        if len(batch) == 32:
            vlm_collate(batch)
            batch = []
    return samples // 32 * 32 / (time.perf_counter() - start)


def run(args: argparse.Namespace, folder: Path) -> str:
    small, large = make_source(folder, args.records), make_source(folder, args.large)
    images = folder / 'images'
    conversion = convert(small, images, folder / 'small', args.workers)
    sizes = ((args.records, small), (args.large, large))
    memory = {n: convert(src, images, folder / f'mem{n}', 1)['peak_mib'] for n, src in sizes}
    tokenizer = tokenizer_dir(folder)
    reader, inline, in_process, plain = 0.0, 0.0, 0.0, 0.0
    for _ in range(ROUNDS):  # alternated, best of each: a busy machine slows one side less than the other
        reader = max(reader, read_with_reader(folder / 'small', tokenizer, args.read))
        inline = max(inline, read_with_reader(folder / 'small', tokenizer, args.read, decode_threads=0))
        in_process = max(in_process, read_with_reader(folder / 'small', tokenizer, args.read, workers=0))
        plain = max(plain, read_plain(small, images, tokenizer, args.read))
    cpu = next((ln.split(':', 1)[1].strip() for ln in Path('/proc/cpuinfo').read_text().splitlines()
                if ln.startswith('model name')), platform.processor())  # fmt: skip
    date = datetime.datetime.now().isoformat(timespec='minutes')
    ratio = memory[args.large] / memory[args.records]
    rows = [
        (
            f'conversion, {args.records} records, {args.workers} workers',
            f'{args.records / conversion["seconds"]:.0f} images/s',
        ),
        ('reader: PreparedShards + DataLoader, 1 worker', f'{reader:.0f} samples/s'),
        (
            'plain Python loop, 1 process (JSON + image files, same decode + tokenize + batching)',
            f'{plain:.0f} samples/s',
        ),
        ('reader / plain loop', f'{reader / plain:.2f}'),
        ('reader, 1 worker, images decoded in its own thread (decode_threads=0)', f'{inline:.0f} samples/s'),
        ('reader with decode_threads=0 / plain loop', f'{inline / plain:.2f}'),
        ('reader in the calling process (DataLoader num_workers=0)', f'{in_process:.0f} samples/s'),
        ('reader in the calling process / plain loop', f'{in_process / plain:.2f}'),
        (f'converter peak memory, {args.records} records', f'{memory[args.records]:.0f} MiB'),
        (f'converter peak memory, {args.large} records', f'{memory[args.large]:.0f} MiB'),
        (f'memory {args.large} / {args.records} records', f'{ratio:.3f}'),
    ]
    head = (
        f'{date}: {cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; benchmarks/data.py '
        f'(LLaVA-format source, JPEG 256 x 192 px, read at {IMAGE_SIZE} px with a ChatML template)'
    )
    return '\n'.join([head, '', '| measure | value |', '|---|---|', *(f'| {k} | {v} |' for k, v in rows)])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--records', type=int, default=2000, help='records converted and read (default 2000)')
    parser.add_argument('--large', type=int, default=20000, help='records of the memory comparison (20000)')
    parser.add_argument('--workers', type=int, default=2, help='conversion workers (default 2)')
    parser.add_argument('--read', type=int, default=1024, help='samples read by each reader (default 1024)')
    parser.add_argument('--no-save', action='store_true', help='print only; do not append to RESULTS.md')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='vlkit-data-bench-') as tmp:
        text = run(args, Path(tmp))
    publish(text, save=not args.no_save)
    return text


if __name__ == '__main__':
    main()
