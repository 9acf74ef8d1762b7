"""Speed of each vlkit connector against the reference implementation it re-implements
(docs/architecture.md, "Reference implementations").

    python benchmarks/connectors.py [--setting small|medium|both] [--precision fp32|bf16|both]
        [--threads 2] [--repeats 7]

The reference's weights are converted into the vlkit connector (``vlkit.convert.convert_state_dict``) and
the outputs compared before timing. A run is forward + backward, in fp32 or with both implementations under
the same bf16 autocast (``torch.autocast('cpu', torch.bfloat16)``, fp32 weights); the two alternate; each
figure is the median of ``--repeats`` runs (more for fast pairs) after ``--warmup``. The FLOP rate is set
against the matmul peak of the same precision, measured in the same run. The tables are appended to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for benchmarks.references, run as a script

from benchmarks.references import PAIRS, SETTINGS, Pair, Setting  # noqa: E402
from vlkit.analysis import count_flops  # noqa: E402
from vlkit.ops import autocast  # noqa: E402

RESULTS = ROOT / 'benchmarks' / 'RESULTS.md'
# fp32: docs/architecture.md, "Reference implementations"; bf16: products rounded to 8 bits of mantissa
TOL = {'fp32': dict(atol=1e-5, rtol=1e-4), 'bf16': dict(atol=5e-2, rtol=5e-2)}
MIN_SECONDS = 1.0  # fast pairs run more than --repeats times, for at least this long each
HEADER = """# Benchmark results

Appended by `benchmarks/connectors.py`, one table per run. Absolute times depend on the machine and on what
else it runs, so every figure that compares is a ratio measured within one run: vlkit's connector against
its reference implementation (converted weights, the same outputs, alternating runs, forward + backward in
fp32), and the FLOP rate against the fp32 matmul peak measured in the same run at the same thread count.
GFLOP are 2·MAC per forward + backward of the matrix products, convolutions and attention, counted by
`vlkit.analysis.count_flops` (docs/profiling.md: attention's backward as twice its forward, a depthwise
convolution's weight gradient at its real cost).
"""


def _seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _step(fn: Callable[[Tensor], Tensor], x: Tensor, grad: Tensor, precision: str) -> None:
    """One forward (under ``precision``'s autocast) and its backward."""
    with autocast('cpu', precision):
        y = fn(x)
    y.backward(grad.to(y.dtype))


def _run(fn: Callable[[Tensor], Tensor], module: nn.Module, x: Tensor, grad: Tensor, precision: str) -> float:
    """One forward + backward from fresh gradients; seconds."""
    module.zero_grad(set_to_none=True)
    return _seconds(lambda: _step(fn, x, grad, precision))


def _gflop(fn: Callable[[Tensor], Tensor], x: Tensor, grad: Tensor, precision: str) -> float:
    return count_flops(lambda: _step(fn, x, grad, precision)) / 1e9


def matmul_peak(n: int = 2048, runs: int = 3, precision: str = 'fp32') -> float:
    """The matmul rate in GFLOP/s of ``precision``: the best of ``runs`` products of two n x n matrices."""
    dtype = torch.bfloat16 if precision == 'bf16' else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = min(_seconds(lambda: a @ b) for _ in range(runs + 1))  # + 1: the first may be slow
    return 2 * n**3 / best / 1e9


def _alternate(fns: list, x: Tensor, grad: Tensor, runs: int, precision: str) -> list[list[float]]:
    """``runs`` forward + backward runs of each of the two ``(function, module)``, alternating; seconds."""
    times: list[list[float]] = [[], []]
    for i in range(runs):
        for j in (0, 1) if i % 2 == 0 else (1, 0):  # neither always runs second, on a warmer cache
            times[j].append(_run(*fns[j], x, grad, precision))
    return times


def measure(pair: Pair, s: Setting, repeats: int, warmup: int, precision: str = 'fp32') -> dict:
    """Checks that the pair agrees (under ``precision``), then times it (alternating) and counts its FLOPs."""
    x = torch.randn(s.batch, s.grid[0] * s.grid[1], s.in_dim)
    ours, ref = pair.ours.eval(), pair.reference.eval()  # eval: no dropout in either
    fns = [(ours, ours), (pair.call or ref, ref)]
    with torch.no_grad(), autocast('cpu', precision):  # the same function, or the timing compares nothing
        expected = fns[1][0](x)
        torch.testing.assert_close(ours(x).float(), expected.float(), **TOL[precision])
    grad = torch.randn_like(expected, dtype=torch.float32)
    slowest = max(max(t) for t in _alternate(fns, x, grad, max(warmup, 1), precision))
    times = _alternate(fns, x, grad, max(repeats, math.ceil(MIN_SECONDS / slowest)), precision)
    ms = [statistics.median(t) * 1e3 for t in times]
    return dict(name=pair.name, ms=ms, gflop=[_gflop(fn, x, grad, precision) for fn, _ in fns])


def _row(r: dict, peak: float) -> str:
    pct = [100 * g / (t / 1e3) / peak for g, t in zip(r['gflop'], r['ms'], strict=True)]
    cells = [r['name'], *(f'{t:.1f}' for t in r['ms']), f'{r["ms"][0] / r["ms"][1]:.2f}',
             *(f'{g:.2f}' for g in r['gflop']), *(f'{p:.0f}%' for p in pct)]  # fmt: skip
    return '| ' + ' | '.join(cells) + ' |'


def table(s: Setting, rows: list[dict], peak: float, precision: str = 'fp32') -> str:
    size = f'batch {s.batch}, {s.grid[0] * s.grid[1]} tokens of {s.in_dim} -> {s.out_dim}, {precision}'
    head = ['connector', 'vlkit ms', 'reference ms', 'vlkit / reference', 'GFLOP vlkit', 'GFLOP reference',
            '% peak vlkit', '% peak reference']  # fmt: skip
    lines = [f'**{s.name}** ({size})', '', '| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|']
    return '\n'.join(lines + [_row(r, peak) for r in rows])


def machine(threads: int, repeats: int, peak: float, runs: str | None = None, precision: str = 'fp32') -> str:
    """The run's date, CPU model, cores, torch version, threads, repeats and matmul peak; ``runs`` says how
    each time was taken where another benchmark's rule is not this file's."""
    info = Path('/proc/cpuinfo').read_text().splitlines() if os.path.isfile('/proc/cpuinfo') else []
    cpu = next(
        (ln.split(':', 1)[1].strip() for ln in info if ln.startswith('model name')), platform.processor()
    )
    date = datetime.datetime.now().isoformat(timespec='minutes')
    runs = runs or f'median of >= {repeats} runs and >= {MIN_SECONDS:.0f} s'
    return (f'{date}: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} threads, {runs}; '
            f'{precision} matmul peak {peak:.0f} GFLOP/s')  # fmt: skip


def append_results(text: str, path: Path = RESULTS) -> None:
    """Appends ``text`` to ``path``, which starts with :data:`HEADER` when new."""
    if not path.exists():
        path.write_text(HEADER)
    with open(path, 'a') as f:
        f.write('\n' + text + '\n')


def publish(text: str, save: bool, path: Path = RESULTS) -> None:
    """Prints a benchmark's ``text`` and, with ``save``, appends it to ``path`` (benchmarks/RESULTS.md)."""
    print(text)
    if save:
        append_results(text, path)


def run_setting(
    s: Setting, repeats: int, warmup: int, pairs: list = PAIRS, precision: str = 'fp32'
) -> tuple[list[dict], float]:
    """Measures every pair at setting ``s``, with a progress line each. Returns the rows, and the matmul
    peak of ``precision``: the best rate of products timed between the pairs, so that a moment of load
    elsewhere on the machine does not lower it."""
    rows, peak = [], matmul_peak(precision=precision)
    for i, build in enumerate(pairs, 1):
        rows.append(measure(build(s), s, repeats, warmup, precision))
        peak = max(peak, matmul_peak(precision=precision))
        (ours, ref), name = rows[-1]['ms'], rows[-1]['name']
        line = f'[{s.name} {precision} {i}/{len(pairs)}] {name}: vlkit {ours:.1f} ms, reference {ref:.1f} ms'
        print(line, file=sys.stderr, flush=True)
    return rows, peak


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--setting', choices=['small', 'medium', 'both'], default='medium')
    parser.add_argument('--precision', choices=['fp32', 'bf16', 'both'], default='fp32')
    parser.add_argument('--threads', type=int, default=2, help='torch threads for every run (default 2)')
    parser.add_argument('--repeats', type=int, default=7, help='timed runs per implementation (default 7)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs first (default 2)')
    parser.add_argument('--no-save', action='store_true', help=f'print only; do not append to {RESULTS.name}')
    names = [build.__name__ for build in PAIRS]
    parser.add_argument('--only', nargs='+', choices=names, default=names, metavar='PAIR',
                        help=f'measure only these pairs (default all: {" ".join(names)})')  # fmt: skip
    args = parser.parse_args(argv)
    pairs = [build for build in PAIRS if build.__name__ in args.only]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    settings = [
        SETTINGS[name] for name in (['small', 'medium'] if args.setting == 'both' else [args.setting])
    ]
    for precision in ['fp32', 'bf16'] if args.precision == 'both' else [args.precision]:
        results = [run_setting(s, args.repeats, args.warmup, pairs, precision) for s in settings]
        peak = max(p for _, p in results)
        blocks = [machine(args.threads, args.repeats, peak, precision=precision)]
        blocks += [table(s, rows, peak, precision) for s, (rows, _) in zip(settings, results, strict=True)]
        publish('\n\n'.join(blocks), save=not args.no_save)


if __name__ == '__main__':
    main()
