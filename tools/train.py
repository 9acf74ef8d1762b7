"""Train a vision-language model from an experiment config.

python tools/train.py configs/blip3_perceiver.py [--work-dir DIR] [--resume [CKPT]] [--amp]
    [--cfg-options train_cfg.max_iters=30 ...] [--launcher none|pytorch|slurm]

Before the model is built, the config's stages run: ``encoder_pretraining`` writes (once; cached) the
encoder weights that ``vision_encoder.checkpoint`` then loads (vlkit.engine.encoder_pretraining),
``llm_pretraining`` the language model that ``language_model.pretrained`` then loads
(vlkit.engine.llm_pretraining), and ``packaged_weights`` converts real checkpoints shipped in pip packages
once (vlkit.engine.packaged).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import time

os.environ.setdefault('HF_HUB_OFFLINE', '1')


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('config', help='experiment config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default work_dirs/CONFIG_NAME)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        help="resume from CKPT, or from the work dir's last checkpoint when no path is given",
    )
    parser.add_argument(
        '--amp', action='store_true', help="bf16 autocast (precision='bf16'; needs bf16 units on a CPU)"
    )
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    return parser.parse_args(argv)


def resume_point(work_dir: str) -> str | None:
    """The newest readable checkpoint in ``work_dir`` (unreadable newer ones are named and skipped)."""
    from mmengine.logging import print_log

    from vlkit.engine.checkpoint import find_resumable_checkpoint

    found = find_resumable_checkpoint(work_dir)
    if found is None:
        print_log(f'--resume: no readable checkpoint in {work_dir}; training from the start', level=30)
    else:
        print_log(f'--resume: resuming from {found}')
    return found


def configure(args: argparse.Namespace):
    """The config with the command line applied: work dir, resume, mixed precision, launcher."""
    import torch

    from vlkit.config import load_config
    from vlkit.config_check import ConfigError, check_config
    from vlkit.engine.precision import PrecisionError, apply_precision

    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = (
        args.work_dir
        or cfg.get('work_dir')
        or osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    )
    if args.resume == 'auto':
        cfg.load_from = resume_point(cfg.work_dir)
        cfg.resume = cfg.load_from is not None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    try:
        apply_precision(cfg, requested='bf16' if args.amp else None)
    except PrecisionError as err:
        raise SystemExit(f'config error: {args.config}: {err}') from err
    if 'strategy' in cfg and not torch.cuda.is_available():
        raise SystemExit(
            f'config error: {args.config}: strategy={cfg.strategy.type!r} (configs/_base_/strategies) needs '
            'CUDA GPUs; on a CPU drop it and use tools/dist_train.sh for gloo DDP'
        )
    if cfg.get('strategy', {}).get('type') == 'DeepSpeedStrategy':
        use_deepspeed_optim_wrapper(cfg)
    try:
        return check_config(cfg)
    except ConfigError as err:
        raise SystemExit(f'config error: {err}') from err


def use_deepspeed_optim_wrapper(cfg) -> None:
    """The schedule's ``optim_wrapper`` for DeepSpeed, which steps and clips itself: the same optimizer and
    per-part settings (``paramwise_cfg``, ``constructor``) in a ``DeepSpeedOptimWrapper``; its accumulation
    and gradient clipping handed to the strategy (``gradient_accumulation_steps``, ``gradient_clipping``)."""
    wrapper = cfg.optim_wrapper
    cfg.optim_wrapper = dict(type='DeepSpeedOptimWrapper', optimizer=wrapper.optimizer)
    for key in ('paramwise_cfg', 'constructor'):
        if key in wrapper:
            cfg.optim_wrapper[key] = wrapper[key]
    if wrapper.get('accumulative_counts', 1) > 1:
        cfg.strategy['gradient_accumulation_steps'] = wrapper.accumulative_counts
    clip = wrapper.get('clip_grad')
    if clip is not None and clip.get('type', 'norm') != 'norm':
        raise SystemExit(f'config error: DeepSpeed clips by norm only; optim_wrapper.clip_grad={dict(clip)}')
    cfg.strategy['gradient_clipping'] = clip['max_norm'] if clip else 0.0  # 0: none, as the schedule says


def init_cpu_distributed(cfg) -> None:
    """DDP on the CPU over gloo (docs/architecture.md, "Known pitfalls"): MMEngine's ``init_dist`` calls
    ``torch.cuda.set_device`` and its DDP wrapper passes ``device_ids``, so the process group is made here,
    before the Runner, and the wrapper is told there are no devices."""
    import torch
    import torch.distributed as dist

    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False)


def seconds_of(step, cfg) -> float:
    """Wall seconds of ``step(cfg)``."""
    start = time.perf_counter()
    step(cfg)
    return time.perf_counter() - start


def write_timings(runner, seconds: dict[str, float]) -> None:
    """``{work_dir}/timings.json``: wall seconds of the stages (0 when a stage's result was cached) and of the
    training (building the runner, data on first use, training and validation), for reports. The benchmark's
    generation, on first use, counts in the first step that needs it: ``llm_pretraining`` where the config
    has that stage (its tokenizer is read from the benchmark), else the training."""
    from mmengine.dist import is_main_process

    if is_main_process():
        with open(osp.join(runner.work_dir, 'timings.json'), 'w') as f:
            json.dump({k: round(v, 1) for k, v in seconds.items()}, f, indent=2)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = configure(args)
    init_cpu_distributed(cfg)

    from vlkit.data import BadSampleError
    from vlkit.engine import (
        PRETRAINING,
        CheckpointLoadError,
        TrainingFault,
        build_runner,
        ensure_packaged_weights,
    )

    start = time.perf_counter()
    seconds = {stage: seconds_of(run, cfg) for stage, run in PRETRAINING.items()}
    seconds['packaged_weights'] = seconds_of(ensure_packaged_weights, cfg)
    runner = build_runner(cfg)
    try:
        runner.train()
        seconds['training'] = time.perf_counter() - start - sum(seconds.values())
        write_timings(runner, seconds)
    except CheckpointLoadError as err:
        raise SystemExit(f'training stopped: {err}') from err
    except (TrainingFault, BadSampleError) as err:
        message = str(err.args[0])  # webdataset appends the open file and url to errors passing through
        runner.logger.error(message)
        raise SystemExit(f'training stopped: {message}') from err


if __name__ == '__main__':
    main()
