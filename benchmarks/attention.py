"""Which attention backend is faster on this CPU, per precision and shape, and what ``auto`` takes
(``vlkit.ops.attention``; docs/architecture.md, "Attention").

    python benchmarks/attention.py [--threads 2] [--repeats 7] [--no-save]

Each shape is one that vlkit's configs attend with (the default model's language model, perceiver and
encoder; the medium connector setting's cross- and self-attention; a 1k-token causal language model). A
run is forward + backward of ``attention(q, k, v, mask, backend=...)`` on fp32 or bf16 tensors; the
backends alternate and each figure is the median of ``--repeats`` runs after a warm-up. The last column
is ``auto``'s time over the faster backend's: 1.00 where ``auto`` takes the faster one. The table is
appended to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for benchmarks.connectors, run as a script

from benchmarks.connectors import machine, matmul_peak, publish  # noqa: E402
from vlkit.ops.attention import attention, auto_backend  # noqa: E402

BACKENDS = ('sdpa', 'math')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}


class Shape(NamedTuple):
    name: str
    q: tuple[int, int, int, int]  # [B, H, Lq, Dh]
    kv_length: int
    mask: str | None  # None, 'causal' or 'causal+padding'


SHAPES = (
    Shape('default LLM self-attention', (32, 4, 45, 64), 45, 'causal+padding'),
    Shape('default perceiver cross-attention', (32, 4, 32, 48), 96, None),
    Shape('default encoder self-attention', (32, 3, 64, 64), 64, None),
    Shape('medium perceiver cross-attention', (2, 16, 64, 128), 793, None),
    Shape('medium encoder self-attention', (2, 16, 729, 72), 729, None),
    Shape('1k-token causal LLM', (1, 32, 1024, 128), 1024, 'causal'),
)


def _inputs(shape: Shape, dtype: torch.dtype) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    b, h, lq, d = shape.q
    q = torch.randn(b, h, lq, d, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(b, h, shape.kv_length, d, dtype=dtype, requires_grad=True) for _ in range(2))
    mask = None
    if shape.mask:
        mask = torch.ones(b, 1, lq, shape.kv_length, dtype=torch.bool).tril(shape.kv_length - lq)
    if shape.mask == 'causal+padding':
        mask[: b // 4, :, :, :3] = False  # a quarter of the batch left-padded by 3 tokens
    return [q, k, v], mask


def _seconds(tensors: list[torch.Tensor], mask: torch.Tensor | None, backend: str) -> float:
    start = time.perf_counter()
    out = attention(*tensors, mask, backend=backend)
    out.float().sum().backward()
    return time.perf_counter() - start


def measure(shape: Shape, precision: str, repeats: int) -> dict:
    """Median forward + backward milliseconds of each backend (alternating), and what ``auto`` takes."""
    tensors, mask = _inputs(shape, DTYPES[precision])
    times: dict[str, list[float]] = {name: [] for name in BACKENDS}
    for i in range(repeats + 2):  # the first two are warm-up
        for name in BACKENDS if i % 2 == 0 else BACKENDS[::-1]:
            seconds = _seconds(tensors, mask, name)
            if i >= 2:
                times[name].append(seconds)
    ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    return dict(shape=shape, precision=precision, ms=ms, auto=auto_backend(*tensors))


def table(rows: list[dict]) -> str:
    head = ['shape', '[B, H, Lq, Dh] x Lk', 'mask', 'precision', *(f'{b} ms' for b in BACKENDS),
            'auto takes', 'auto / faster']  # fmt: skip
    lines = ['| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
    for r in rows:
        s, ms = r['shape'], r['ms']
        auto_over_faster = ms[r['auto']] / min(ms.values())
        cells = [s.name, f'{list(s.q)} x {s.kv_length}', s.mask or '-', r['precision'],
                 *(f'{ms[b]:.2f}' for b in BACKENDS), r['auto'], f'{auto_over_faster:.2f}']  # fmt: skip
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--threads', type=int, default=2, help='torch threads (default 2)')
    parser.add_argument('--repeats', type=int, default=7, help='timed runs per backend (default 7)')
    parser.add_argument('--shapes', type=int, default=len(SHAPES), help='measure only the first N shapes')
    parser.add_argument('--no-save', action='store_true', help='print only; do not append to RESULTS.md')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for shape in SHAPES[: args.shapes]:
        for precision in DTYPES:
            rows.append(measure(shape, precision, args.repeats))
            ms = ', '.join(f'{b} {t:.2f} ms' for b, t in rows[-1]['ms'].items())
            print(f'{shape.name}, {precision}: {ms}', file=sys.stderr, flush=True)
    runs = f'attention backends (benchmarks/attention.py), forward + backward, median of {args.repeats} runs'
    text = '\n\n'.join([machine(args.threads, args.repeats, matmul_peak(), runs=runs), table(rows)])
    publish(text, save=not args.no_save)
    return text


if __name__ == '__main__':
    main()
