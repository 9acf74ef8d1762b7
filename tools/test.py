"""Evaluate a checkpoint: accuracy per task on a split, zero- or k-shot, as a table and JSON in the work dir.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--split val] [--shots K [--shots-seed S]]
        [--blank-images | --compare-blank]
        [--benchmark {vqav2,okvqa,textvqa,gqa,vizwiz,coco_caption} [--data DIR] [--ocr-tokens] [--template T]]

``--benchmark NAME`` evaluates on a standard benchmark prepared by ``tools/prepare_data.py`` into ``--data``
(default ``data/NAME``), with its own metric and prompt, greedy decoding, and writes the official submission
file ``submission_NAME_SPLIT_CHECKPOINT.json`` beside the scores ``NAME_SPLIT_Kshot_CHECKPOINT.json``
(vlkit.evaluation.benchmarks). ``--ocr-tokens`` puts TextVQA's OCR tokens in the prompt; ``--template``
renders the prompts (default: the training dataset's template); ``--shots K`` draws demonstrations from the
prepared folder's ``train`` split.

``--shots K`` puts K demonstrations (image, question, answer), drawn with a fixed seed from the train split,
before every query's image and question (BLIP-3's k-shot protocol; vlkit.evaluation.FewShotDataset).
``--blank-images`` replaces every image by a constant grey one; ``--compare-blank`` evaluates both, each
question with its images and with blank ones in the same batches, and prints the gain per task beside the
question-only prior, which shows how much the model takes from images.
Each evaluation writes ``accuracy_SPLIT_Kshot[_blank]_CHECKPOINT.json``; a zero-shot one also refreshes
``accuracy_SPLIT[_blank].json``, the latest result.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time

os.environ.setdefault('HF_HUB_OFFLINE', '1')

from mmengine.hooks import Hook  # noqa: E402

from vlkit.evaluation import BENCHMARKS, result_filename  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="a checkpoint file, or 'last' for the work dir's newest one")
    parser.add_argument('--work-dir', help='where results go (default work_dirs/CONFIG_NAME)')
    parser.add_argument('--split', help="split to evaluate (default val; a benchmark folder's only split)")
    parser.add_argument('--shots', type=int, default=0, help='demonstrations before each query (default 0)')
    parser.add_argument('--shots-seed', type=int, default=0, help='seed of the demonstrations (default 0)')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--blank-images', action='store_true', help='evaluate with every image blanked')
    group.add_argument('--compare-blank', action='store_true', help='evaluate with real and blank images')
    parser.add_argument(
        '--benchmark', choices=BENCHMARKS, help='a standard benchmark (needs --data or data/NAME)'
    )
    parser.add_argument(
        '--data', help='the folder tools/prepare_data.py wrote for --benchmark (default data/NAME)'
    )
    parser.add_argument('--ocr-tokens', action='store_true', help='TextVQA: the OCR tokens in the prompt')
    parser.add_argument(
        '--submission-questions',
        metavar='FILE',
        help="VQAv2 test-dev: test2015's questions file; the submission answers each ('' where not run)",
    )
    parser.add_argument('--template', help="--benchmark prompts' template (default: the training dataset's)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    args = parser.parse_args(argv)
    if args.benchmark is None and (args.data or args.ocr_tokens or args.template):
        parser.error('--data, --ocr-tokens and --template go with --benchmark')
    return args


def resolve_checkpoint(checkpoint: str, work_dir: str) -> str:
    if checkpoint == 'last':
        from vlkit.engine import read_last_checkpoint

        checkpoint = read_last_checkpoint(work_dir)
        if checkpoint is None:
            raise SystemExit(
                f"'last': {work_dir} has no last_checkpoint; train first or pass a checkpoint file"
            )
    if not osp.isfile(checkpoint):
        raise SystemExit(f'checkpoint {checkpoint!r} does not exist')
    return checkpoint


def use_demonstrations(cfg, shots: int, seed: int) -> None:
    """Wraps the test dataset so that ``shots`` demonstrations precede every query: from the config's
    ``few_shot_demonstrations`` dataset where it names one (a training mixture whose samples are not all
    single-image pairs), else from its train dataset."""
    demonstrations = cfg.get('few_shot_demonstrations')
    if demonstrations is None and 'train_dataloader' not in cfg:
        raise SystemExit(
            f'--shots {shots}: the config has no few_shot_demonstrations and no train_dataloader to draw '
            'demonstrations from'
        )
    loader = cfg.test_dataloader
    demonstrations = demonstrations or cfg.train_dataloader.dataset
    loader.dataset = dict(
        type='FewShotDataset', dataset=loader.dataset, demonstrations=demonstrations, shots=shots, seed=seed
    )


def use_benchmark(cfg, args: argparse.Namespace) -> dict:
    """Sets the test data, evaluator and answer length for ``--benchmark``; returns what the result
    records."""
    from vlkit.config import assemble
    from vlkit.data.shards import read_manifest
    from vlkit.evaluation import benchmark

    bench = benchmark(args.benchmark, args.ocr_tokens)
    data_dir = args.data or osp.join('data', args.benchmark)
    try:
        splits = read_manifest(data_dir)['splits']
    except FileNotFoundError as err:
        raise SystemExit(f'--benchmark {args.benchmark}: {err}') from err
    if args.split is None and len(splits) == 1:
        args.split = next(iter(splits))
    if args.split not in splits:
        raise SystemExit(
            f'--benchmark {args.benchmark}: {data_dir} has splits {sorted(splits)}; name one with --split'
        )
    template = (
        args.template or (cfg.get('train_dataloader') or {}).get('dataset', {}).get('template') or 'vlkit'
    )
    common = dict(
        type='PreparedShards',
        data_dir=data_dir,
        template=template,
        question_prompt=bench.question_prompt,
        caption_prompt=bench.caption_prompt,
        tokenizer=None,
        image_size=None,
        image_processor=None,
    )
    cfg.test_dataloader.dataset = dict(common, split=args.split, mode='generate')
    if args.shots:
        if 'train' not in splits:
            raise SystemExit(
                f'--shots {args.shots}: {data_dir} has no train split to draw demonstrations from'
            )
        cfg.train_dataloader = dict(dataset=dict(common, split='train', mode='train'))
    submission = osp.join(
        cfg.work_dir, f'submission_{args.benchmark}_{args.split}_{_stem(args.checkpoint)}.json'
    )
    cfg.test_evaluator = dict(
        type=bench.metric, submission=bench.submission, submission_file=submission, **bench.metric_options
    )
    if args.submission_questions:
        if bench.submission != 'vqa':
            raise SystemExit(f'--submission-questions pads a VQAv2 submission, not a {args.benchmark} one')
        cfg.test_evaluator['submission_questions'] = args.submission_questions
    cfg.model.max_new_tokens = bench.max_new_tokens
    assemble(cfg)  # fills the new dataset's tokenizer, image size and preprocessing
    prompt = bench.caption_prompt if args.benchmark == 'coco_caption' else bench.question_prompt
    return {
        'benchmark': args.benchmark,
        'data': data_dir,
        'template': template,
        'prompt': prompt,
        'submission_file': submission,
        **bench.notes,
    }


def _stem(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def set_blank_images(dataset: dict, blank: bool) -> None:
    """Sets ``blank_images`` on a dataset config, and on the queries and demonstrations of a few-shot one."""
    if dataset.get('type') == 'FewShotDataset':
        set_blank_images(dataset['dataset'], blank)
        set_blank_images(dataset['demonstrations'], blank)
    else:
        dataset['blank_images'] = blank


def pair_with_blank_images(cfg) -> None:
    """Every question also asked with blank images, in the same batches (twice the batch size, so a batch
    holds as many questions as before), each variant scored on its own (vlkit.evaluation.blank_images)."""
    loader = cfg.test_dataloader
    loader.dataset = dict(type='BlankImagePairs', dataset=loader.dataset)
    loader.batch_size = 2 * loader.batch_size
    cfg.test_evaluator = dict(type='ByVariant', metric=cfg.test_evaluator)


def split_variants(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """``ByVariant``'s keys (``exact_match/colour``, ``exact_match/blank images/colour``) as the columns
    ``images`` and ``blank images`` with the metric's own keys."""
    columns: dict[str, dict[str, float]] = {'images': {}, 'blank images': {}}
    for key, value in metrics.items():
        prefix, _, rest = key.partition('/')
        variant, _, name = rest.partition('/')
        if variant == 'blank images':
            columns['blank images'][f'{prefix}/{name}'] = value
        else:
            columns['images'][key] = value
    return columns


class ProgressBarHook(Hook):
    """A progress bar over the evaluation batches on stderr (MMEngine logs only every few batches)."""

    def before_test_epoch(self, runner) -> None:
        from mmengine.dist import is_main_process
        from tqdm import tqdm

        self.bar = tqdm(
            total=len(runner.test_dataloader),
            desc='evaluating',
            unit='batch',
            file=sys.stderr,
            mininterval=2.0,
            disable=not is_main_process(),
        )

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.bar.update(1)

    def after_test_epoch(self, runner, metrics: dict | None = None) -> None:
        self.bar.close()


def write_results(
    work_dir: str, args: argparse.Namespace, columns: dict, seconds: float, setting: dict | None = None
) -> str:
    """One JSON file per evaluation (split, shots and checkpoint in its name; ``seconds`` its wall time);
    zero-shot results also refresh ``accuracy_SPLIT[_blank].json`` (``BENCHMARK_SPLIT.json``)."""
    name = result_filename(args.split, args.shots, args.checkpoint, args.blank_images, args.benchmark)
    out = osp.join(work_dir, name)
    record = {
        'checkpoint': args.checkpoint,
        'split': args.split,
        'shots': args.shots,
        **(setting or {}),
        **columns,
    }
    record['seconds'] = round(seconds, 1)
    if args.shots:
        record['shots_seed'] = args.shots_seed
    with open(out, 'w') as f:
        json.dump(record, f, indent=2)
    if not args.shots:
        latest = f'{args.benchmark or "accuracy"}_{args.split}{"_blank" if args.blank_images else ""}.json'
        shutil.copyfile(out, osp.join(work_dir, latest))
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    from vlkit.config import load_config
    from vlkit.engine import PRETRAINING_STAGES, CheckpointLoadError, PrecisionError, Runner, apply_precision
    from vlkit.evaluation import format_accuracy_table

    cfg = load_config(args.config, args.cfg_options)
    try:
        apply_precision(cfg)
    except PrecisionError as err:
        raise SystemExit(f'config error: {args.config}: {err}') from err
    cfg.work_dir = (
        args.work_dir
        or cfg.get('work_dir')
        or osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    )
    args.checkpoint = resolve_checkpoint(args.checkpoint, cfg.work_dir)
    cfg.load_from = args.checkpoint
    setting = None
    if args.benchmark:
        setting = use_benchmark(cfg, args)
    else:
        args.split = args.split or 'val'
        cfg.test_dataloader.dataset.split = args.split
    if args.shots:
        use_demonstrations(cfg, args.shots, args.shots_seed)
    set_blank_images(cfg.test_dataloader.dataset, args.blank_images)
    if args.compare_blank:
        pair_with_blank_images(cfg)
    # evaluation builds nothing for training or validation (MMEngine wants all of val_* or none of them),
    # and the checkpoint holds every weight: no stage or part initialisation is needed
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler', *PRETRAINING_STAGES):
        cfg.pop(key, None)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'load_parts'):
        cfg.pop(key, None)
    runner = Runner.from_cfg(cfg)
    runner.register_hook(ProgressBarHook(), priority='VERY_LOW')
    try:
        metrics = runner.test()
    except CheckpointLoadError as err:
        raise SystemExit(f'evaluation stopped: {err}') from err
    results = (
        split_variants(metrics)
        if args.compare_blank
        else {'blank images' if args.blank_images else 'images': metrics}
    )
    columns = dict(results)
    if 'images' in results and 'blank images' in results:
        columns['gain'] = {k: v - results['blank images'][k] for k, v in results['images'].items()}
    prior = getattr(runner.test_loop.dataloader.dataset, 'question_only_prior', None)
    if prior:
        columns['question only'] = prior
    table = format_accuracy_table(columns)
    shots = f', {args.shots}-shot (seed {args.shots_seed})' if args.shots else ''
    what = f'{args.benchmark} {args.split}' if args.benchmark else f'{args.split} accuracy (%)'
    runner.logger.info(f'{what}{shots}, checkpoint {args.checkpoint}:\n{table}')
    print(table)
    if setting is not None:
        metric = runner.test_evaluator.metrics[0]
        metric = getattr(metric, 'main', metric)  # --compare-blank: the real images' metric
        if getattr(metric, 'tokenizer_used', None):
            setting['caption_tokenizer'] = metric.tokenizer_used
        print(f'submission file: {setting["submission_file"]}')
    out = write_results(cfg.work_dir, args, columns, time.perf_counter() - start, setting)
    runner.logger.info(f'results written to {out}')
    return columns


if __name__ == '__main__':
    main()
