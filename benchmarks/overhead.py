"""The framework's own cost: vlkit's whole training step against a plain PyTorch loop over the same work.

    python benchmarks/overhead.py [CONFIG] [--iters 60] [--warmup 10] [--precision auto|fp32|bf16]
        [--threads 2] [--no-save]

vlkit's step is ``tools/train.py``'s: MMEngine's Runner with every hook of the config (timer, logger,
parameter scheduler, non-finite guard, data skips, random states, checkpoints), the config's data loader
and ``GuardedOptimWrapper``; its time per iteration is ``IterTimerHook``'s, from the data loader's fetch
to the end of the hooks. The plain loop runs the same model (the same config, the same seed), the same
optimizer and gradient clipping on the same batches, drawn beforehand from the same dataset, with nothing
else: ``loss = model(**batch, mode='loss'); backward; clip; step``. Both take the median over ``--iters``
iterations after ``--warmup``; the plain loop runs before and after the Runner and its two medians are
pooled, so a slower moment of the machine does not favour either. ``data_time`` is the Runner's time
waiting for the next batch, as a share of its iteration. Checkpoints and validation are left out of both
(they happen every few hundred iterations; tools/train.py's timings.json has the whole run).

The step's FLOPs (2 x MAC of the matrix products, convolutions and attention of the loss's forward and
backward, counted by ``vlkit.analysis`` on the first batch) put the plain loop's rate against the matmul
peak measured in the same run, and give the seconds that the config's ``max_iters`` steps would take at
that peak: how far any speed-up of this precision can go on this machine. The table is appended to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from mmengine.config import DictAction

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for benchmarks.connectors, run as a script

from benchmarks.connectors import machine, matmul_peak, publish  # noqa: E402

DEFAULT_CONFIG = str(ROOT / 'configs' / 'blip3_perceiver.py')


def load(config: str, options: dict, precision: str | None):
    """The config as tools/train.py sees it, with the run's precision resolved."""
    from vlkit.config import load_config
    from vlkit.engine import apply_precision

    cfg = load_config(config, options)
    apply_precision(cfg, 'cuda' if torch.cuda.is_available() else 'cpu', precision)
    return cfg


def runner_step_times(cfg, iters: int, work_dir: str) -> tuple[list[float], list[float]]:
    """Seconds per iteration and data_time of a Runner training ``iters`` iterations (no checkpoint, no
    validation)."""
    from vlkit.engine import build_runner

    cfg.work_dir = work_dir
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters + 1
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    cfg.default_hooks.checkpoint.interval = iters + 1
    cfg.default_hooks.checkpoint.save_last = False
    cfg.default_hooks.logger.interval = 1
    build_runner(cfg).train()
    (log,) = Path(work_dir).glob('*/vis_data/scalars.json')
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    rows = [r for r in rows if 'time' in r and 'loss' in r]
    return [r['time'] for r in rows], [r['data_time'] for r in rows]


def build_model(cfg) -> torch.nn.Module:
    """The config's model, seeded as the Runner seeds it, in training mode."""
    from vlkit.registry import MODELS

    torch.manual_seed(cfg.get('randomness', {}).get('seed', 0))
    return MODELS.build(cfg.model).train()


def step_flops(cfg, batch: dict) -> int:
    """FLOPs (2 x MAC) of one training step on ``batch``: the matrix products, convolutions and attention of
    the loss's forward and backward, as ``vlkit.analysis`` counts them (the optimizer's elementwise update
    is not counted)."""
    from vlkit.analysis.flops import count_flops

    model = build_model(cfg)
    return count_flops(lambda: model(**batch, mode='loss')['loss'].backward())


def plain_step_times(cfg, batches: list[dict], warmup: int) -> list[float]:
    """Seconds per step of the plain loop on ``batches`` (after ``warmup`` untimed steps)."""
    model = build_model(cfg)
    optim_cfg = dict(cfg.optim_wrapper.optimizer)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = getattr(torch.optim, optim_cfg.pop('type'))(trainable, **optim_cfg)
    max_norm = (cfg.optim_wrapper.get('clip_grad') or {}).get('max_norm')
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        loss = model(**batch, mode='loss')['loss']
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def draw_batches(cfg, n: int) -> list[dict]:
    """``n`` batches from the config's training data loader, collated as the Runner collates them."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    with DefaultScope.overwrite_default_scope(cfg.default_scope):  # vlkit's datasets, as the Runner's
        loader = Runner.build_dataloader(cfg.train_dataloader)
        return list(itertools.islice(iter(loader), n))


def measure(config: str, iters: int, warmup: int, precision: str | None, options: dict) -> dict:
    cfg = load(config, options, precision)
    batches = draw_batches(cfg, iters + warmup)
    plain = plain_step_times(load(config, options, precision), batches, warmup)
    with tempfile.TemporaryDirectory(prefix='vlkit-overhead-') as work_dir:
        step, data = runner_step_times(load(config, options, precision), iters + warmup, work_dir)
    plain += plain_step_times(load(config, options, precision), batches, warmup)
    step, data = step[warmup:], data[warmup:]
    vlkit_ms, plain_ms = statistics.median(step) * 1e3, statistics.median(plain) * 1e3
    return dict(
        config=Path(config).name, precision=cfg.precision, iters=iters, vlkit_ms=vlkit_ms, plain_ms=plain_ms,
        ratio=vlkit_ms / plain_ms, data_ms=statistics.median(data) * 1e3,
        data_share=statistics.median(d / t for d, t in zip(data, step, strict=True)),
        gflop=step_flops(load(config, options, precision), batches[0]) / 1e9,
        max_iters=cfg.train_cfg.max_iters,
    )  # fmt: skip


def against_peak(r: dict, peak: float) -> dict:
    """``r`` with the plain loop's FLOP rate as a share of the matmul ``peak`` (GFLOP/s), and the seconds
    that the config's ``max_iters`` steps would take at that peak: a floor that no speed-up of the
    framework can go below at this precision on this machine."""
    return dict(r, peak=peak, peak_share=r['gflop'] / (r['plain_ms'] / 1e3) / peak,
                floor_s=r['max_iters'] * r['gflop'] / peak)  # fmt: skip


def table(r: dict) -> str:
    head = ['config', 'precision', 'vlkit step ms', 'plain loop ms', 'vlkit / plain', 'data_time ms',
            'data_time share', 'GFLOP per step', 'plain loop % of peak',
            f'{r["max_iters"]} steps at peak s']  # fmt: skip
    cells = [r['config'], r['precision'], f'{r["vlkit_ms"]:.1f}', f'{r["plain_ms"]:.1f}',
             f'{r["ratio"]:.3f}', f'{r["data_ms"]:.1f}', f'{100 * r["data_share"]:.1f}%', f'{r["gflop"]:.2f}',
             f'{100 * r["peak_share"]:.0f}%', f'{r["floor_s"]:.0f}']  # fmt: skip
    return '\n'.join([
        f'**framework overhead** (benchmarks/overhead.py; median of {r["iters"]} iterations each; GFLOP: '
        "the first batch's forward + backward as vlkit.analysis counts them; peak: the matmul peak above)",
        '',
        '| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|', '| ' + ' | '.join(cells) + ' |',
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    parser.add_argument('--iters', type=int, default=60, help='timed iterations of each (default 60)')
    parser.add_argument('--warmup', type=int, default=10, help='untimed iterations first (default 10)')
    parser.add_argument('--precision', choices=['auto', 'fp32', 'bf16'], help="default: the config's")
    parser.add_argument('--threads', type=int, default=2, help='torch threads (default 2)')
    parser.add_argument('--no-save', action='store_true', help='print only; do not append to RESULTS.md')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='overrides for the config, as tools/train.py takes them')  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args.config, args.iters, args.warmup, args.precision, args.cfg_options)
    peak = matmul_peak(precision=result['precision'])
    result = against_peak(result, peak)
    text = machine(args.threads, args.iters, peak, runs='see the table', precision=result['precision'])
    text += '\n\n' + table(result)
    publish(text, save=not args.no_save)
    return result


if __name__ == '__main__':
    main()
