"""Evaluate a checkpoint: exact-match accuracy per task on a split, as a table and JSON in the work dir.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--split val] [--blank-images | --compare-blank]

``--blank-images`` replaces every image by a constant grey one; ``--compare-blank`` evaluates both and
prints the gain per task beside the question-only prior, which shows how much the model takes from images.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp

os.environ.setdefault('HF_HUB_OFFLINE', '1')


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="a checkpoint file, or 'last' for the work dir's newest one")
    parser.add_argument('--work-dir', help='where results go (default work_dirs/CONFIG_NAME)')
    parser.add_argument('--split', default='val', help='split of the synthetic benchmark (default val)')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--blank-images', action='store_true', help='evaluate with every image blanked')
    group.add_argument('--compare-blank', action='store_true', help='evaluate with real and blank images')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    return parser.parse_args(argv)


def resolve_checkpoint(checkpoint: str, work_dir: str) -> str:
    if checkpoint == 'last':
        pointer = osp.join(work_dir, 'last_checkpoint')
        if not osp.isfile(pointer):
            raise SystemExit(f"'last': {pointer} does not exist; train first or pass a checkpoint file")
        with open(pointer) as f:
            checkpoint = f.read().strip()
    if not osp.isfile(checkpoint):
        raise SystemExit(f'checkpoint {checkpoint!r} does not exist')
    return checkpoint


def main(argv=None) -> dict:
    args = parse_args(argv)
    from mmengine.runner import Runner, TestLoop

    import vlkit.engine  # noqa: F401
    from vlkit.config import load_config
    from vlkit.evaluation import format_accuracy_table

    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = (
        args.work_dir
        or cfg.get('work_dir')
        or osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    )
    args.checkpoint = resolve_checkpoint(args.checkpoint, cfg.work_dir)
    cfg.load_from = args.checkpoint
    cfg.test_dataloader.dataset.split = args.split
    cfg.test_dataloader.dataset.blank_images = args.blank_images
    # evaluation builds nothing for training or validation (MMEngine wants all of val_* or none of them)
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler'):
        cfg.pop(key, None)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg.pop(key, None)
    runner = Runner.from_cfg(cfg)
    results = {'images' if not args.blank_images else 'blank images': runner.test()}
    if args.compare_blank:
        blank = json.loads(json.dumps(cfg.test_dataloader))
        blank['dataset']['blank_images'] = True
        results['blank images'] = TestLoop(runner, blank, cfg.test_evaluator).run()
    columns = dict(results)
    if 'images' in results and 'blank images' in results:
        columns['gain'] = {k: v - results['blank images'][k] for k, v in results['images'].items()}
    prior = getattr(runner.test_loop.dataloader.dataset, 'question_only_prior', None)
    if prior:
        columns['question only'] = prior
    table = format_accuracy_table(columns)
    runner.logger.info(f'{args.split} accuracy (%), checkpoint {args.checkpoint}:\n{table}')
    print(table)
    suffix = '_blank' if args.blank_images else ''
    out = osp.join(cfg.work_dir, f'accuracy_{args.split}{suffix}.json')
    with open(out, 'w') as f:
        json.dump({'checkpoint': args.checkpoint, 'split': args.split, **columns}, f, indent=2)
    runner.logger.info(f'results written to {out}')
    return columns


if __name__ == '__main__':
    main()
