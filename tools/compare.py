"""Compare connectors and fusions on cost and quality: train, evaluate and profile each, then report.

    python tools/compare.py CONFIG [CONFIG ...] [--connectors linear mlp qformer perceiver c_abstractor]
        [--fusions autoregressive cross_attention] [--tokens M] [--out DIR] [--max-iters N] [--shots 0 4]
        [--split val] [--benchmark NAME [--data DIR]] [--seeds N] [--profile-only] [--force]
        [--cfg-options key=value ...]

Each config is crossed with the connector and fusion presets named (``configs/_base_/connectors/NAME.py``,
``configs/_base_/fusions/NAME.py``; a preset replaces the config's connector or fusion whole). ``--tokens M``
gives every connector with a token-count knob (its class's ``token_knob``: ``num_latents``, ``num_queries``,
``num_tokens``) M visual tokens; the others keep theirs and are marked so. Each architecture's config is
written to ``OUT/configs/NAME.py``; it is trained in the work dir ``OUT/NAME`` by ``tools/train.py`` (or
reused when its last checkpoint is the final one and its config hash matches; resumed from its last
checkpoint when only the final one is missing), evaluated by
``tools/test.py`` once per ``--shots`` value and profiled (``vlkit.analysis.profile_config``). ``OUT`` then
holds ``report.md``, a self-contained ``report.html``, the PNG plots and ``results.json``. ``--profile-only``
skips training and evaluation: the cost half, in seconds. ``--max-iters N`` trains
``train_cfg.max_iters=N`` for a quick look. ``--benchmark NAME --data DIR`` evaluates each architecture on a
standard benchmark prepared by ``tools/prepare_data.py`` (``tools/test.py --benchmark``) instead of the
config's own test data. ``--seeds N`` trains and evaluates every architecture N times, with the config's
seed and the N - 1 after it (model initialisation and training-data stream): the report gives each score's
mean ± sample standard deviation, error bars in its plots and every run with its seed. The config's own
seed trains in ``OUT/NAME``, the others in ``OUT/NAME-seedS``, so raising N reuses the runs already there.
A failed run is reported as failed, with its log, and the others go on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

os.environ.setdefault('HF_HUB_OFFLINE', '1')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout without installing

from mmengine.config import Config, DictAction  # noqa: E402

from vlkit.analysis.report import RunResult, load_loss_curve, write_report  # noqa: E402
from vlkit.config import load_config  # noqa: E402
from vlkit.engine import read_last_checkpoint  # noqa: E402
from vlkit.evaluation import BENCHMARKS, result_filename  # noqa: E402

PRESETS = osp.join(ROOT, 'configs', '_base_')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('configs', nargs='+', help='experiment configs (each crossed with the presets)')
    parser.add_argument(
        '--connectors', nargs='+', help='connector presets (configs/_base_/connectors/NAME.py)'
    )
    parser.add_argument('--fusions', nargs='+', help='fusion presets (configs/_base_/fusions/NAME.py)')
    parser.add_argument('--tokens', type=int, help='visual tokens for every connector with a token knob')
    parser.add_argument('--out', default='work_dirs/compare', help='output dir (default work_dirs/compare)')
    parser.add_argument('--max-iters', type=int, help='shorter training: train_cfg.max_iters=N')
    parser.add_argument('--shots', type=int, nargs='+', default=[0], help='evaluate k-shot for each k (0)')
    parser.add_argument('--split', help="evaluation split (default val; a benchmark folder's only split)")
    parser.add_argument(
        '--benchmark', choices=BENCHMARKS, help='a standard benchmark (tools/test.py --benchmark)'
    )
    parser.add_argument('--data', help='the folder prepared for --benchmark (default data/NAME)')
    parser.add_argument('--profile-only', action='store_true', help='cost only: no training, no evaluation')
    parser.add_argument('--force', action='store_true', help='train from the start: no reuse, no resume')
    parser.add_argument(
        '--seeds', type=int, default=1, help="runs per architecture, seeds config's seed + 0..N-1 (default 1)"
    )
    parser.add_argument('--cfg-options', nargs='+', default=[], help='key=value overrides for every run')
    return parser.parse_args(argv)


@dataclass
class Variant:
    """One architecture to compare: its name, its config (unassembled) and a note on its token count."""

    name: str
    cfg: Config
    tokens_note: str = ''


def preset(kind: str, name: str) -> dict:
    """The ``connector`` or ``fusion`` dict of ``configs/_base_/{kind}s/{name}.py``."""
    path = osp.join(PRESETS, f'{kind}s', f'{name}.py')
    if not osp.isfile(path):
        names = sorted(osp.splitext(f)[0] for f in os.listdir(osp.dirname(path)) if f.endswith('.py'))
        raise SystemExit(f'--{kind}s: no preset {name!r} ({path}); available: {names}')
    return Config.fromfile(path)[kind].to_dict()


def set_visual_tokens(connector: dict, tokens: int) -> str:
    """Sets the connector's token-count knob to ``tokens``; returns a note when it has none."""
    from vlkit.registry import CONNECTORS

    cls = CONNECTORS.get(connector['type'])
    if cls is None:
        raise SystemExit(f'--tokens: connector type {connector["type"]!r} is not registered')
    if cls.token_knob is None:
        return f'no token knob, not {tokens}'
    connector[cls.token_knob] = tokens
    return ''


def variants(args: argparse.Namespace) -> list[Variant]:
    """Every config crossed with the connector and fusion presets asked for."""
    out = []
    for config in args.configs:
        for connector in args.connectors or [None]:
            for fusion in args.fusions or [None]:
                cfg = Config.fromfile(config)
                if connector:
                    # replaced whole, never merged (docs/architecture.md, "Configs")
                    cfg.connector = preset('connector', connector)
                if fusion:
                    cfg.fusion = preset('fusion', fusion)
                note = set_visual_tokens(cfg.connector, args.tokens) if args.tokens else ''
                stem = osp.splitext(osp.basename(config))[0]
                parts = [stem] if len(args.configs) > 1 or not (connector or fusion) else []
                parts += [p for p in (connector, fusion) if p]
                out.append(Variant('+'.join(parts), cfg, note))
    names = [v.name for v in out]
    if len(set(names)) < len(names):
        raise SystemExit(f'two architectures would share a name (and work dir): {names}')
    return out


def run_options(args: argparse.Namespace) -> list[str]:
    """``--cfg-options`` for every run: a shorter schedule logging often enough to draw its loss curve, the
    user's own options (which win), and no validation in training (``tools/test.py`` evaluates once)."""
    options = []
    if args.max_iters:
        options += [f'train_cfg.max_iters={args.max_iters}']
        options += [f'default_hooks.logger.interval={max(1, min(50, args.max_iters // 20))}']
    return [*options, *args.cfg_options, 'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']


def parse_options(options: list[str]) -> dict:
    """``key=value`` strings parsed as ``tools/train.py`` parses them."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    return parser.parse_args(['--cfg-options', *options] if options else []).cfg_options


def config_hash(config_text: str, options: list[str]) -> str:
    return hashlib.sha256('\n'.join([config_text, *options]).encode()).hexdigest()[:12]


def last_checkpoint(work_dir: str) -> str | None:
    path = read_last_checkpoint(work_dir)
    return path if path and osp.isfile(path) else None


def has_config_hash(work_dir: str, digest: str) -> bool:
    """Whether ``work_dir`` was started for the config (hash) ``digest``."""
    stamp = osp.join(work_dir, 'config_hash')
    if not osp.isfile(stamp):
        return False
    with open(stamp) as f:
        return f.read().strip() == digest


def is_finished(work_dir: str, digest: str, max_iters: int) -> bool:
    """A run of the same config (hash) whose last checkpoint is its final iteration."""
    checkpoint = last_checkpoint(work_dir)
    return (
        checkpoint is not None
        and has_config_hash(work_dir, digest)
        and re.fullmatch(rf'iter_{max_iters}\.pth', osp.basename(checkpoint)) is not None
    )


def tool(name: str, *args: str, log: str, append: bool = False) -> tuple[bool, str]:
    """Runs ``tools/NAME`` with its output in ``log`` (after what it holds, with ``append``); returns success
    and the log's last line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    with open(log, 'a' if append else 'w') as f:
        code = subprocess.run(
            [sys.executable, osp.join(ROOT, 'tools', name), *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
        ).returncode
    with open(log, errors='replace') as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith('evaluating')]
    return code == 0, f'exit code {code}: {lines[-1][:200] if lines else "no output"}'


def say(message: str) -> None:
    print(message, flush=True)


def train(config: str, work_dir: str, options: list[str], run: RunResult, force: bool) -> None:
    """Trains into ``work_dir``: reuses a finished run with the same config hash, resumes an unfinished one
    from its last checkpoint (a killed comparison loses only the iterations since it), else starts afresh."""
    max_iters = load_config(config, parse_options(options)).train_cfg.max_iters
    run.log = osp.join(work_dir, 'train.log')
    if not force and is_finished(work_dir, run.config_hash, max_iters):
        run.status = 'reused'
        say(f'  reusing the finished run in {work_dir}')
        return
    same_config = not force and has_config_hash(work_dir, run.config_hash)
    resume_from = last_checkpoint(work_dir) if same_config else None
    if resume_from:
        run.status = 'resumed'
        say(f'  resuming the unfinished run from {osp.basename(resume_from)} to {max_iters} (log: {run.log})')
    else:
        shutil.rmtree(work_dir, ignore_errors=True)  # a stale run or one of another config: nothing to keep
        os.makedirs(work_dir)
        with open(osp.join(work_dir, 'config_hash'), 'w') as f:  # before training, so that a kill can resume
            f.write(run.config_hash)
        say(f'  training {max_iters} iterations (log: {run.log})')
    start = time.monotonic()
    cli = ['--resume'] * bool(resume_from) + (['--cfg-options', *options] if options else [])
    ok, last = tool('train.py', config, '--work-dir', work_dir, *cli, log=run.log, append=bool(resume_from))
    if not ok:
        run.status, run.error = 'failed', f'training: {last}'
        say(f'  training FAILED ({last}); see {run.log}')
        return
    say(f'  trained in {time.monotonic() - start:.0f} s')


def training_seconds(work_dir: str) -> float | None:
    """The training's wall seconds that tools/train.py recorded in the work dir (a reused run's too)."""
    path = osp.join(work_dir, 'timings.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get('training')


def evaluate(config: str, work_dir: str, options: list[str], run: RunResult, args) -> None:
    """``tools/test.py`` once per ``--shots`` value (reusing results already there for a reused run)."""
    checkpoint = last_checkpoint(work_dir)
    for shots in args.shots:
        result = osp.join(work_dir, result_filename(args.split, shots, checkpoint, benchmark=args.benchmark))
        if run.status != 'reused' or not osp.isfile(result):
            log = osp.join(work_dir, f'test_{args.benchmark or ""}{args.split}_{shots}shot.log')
            say(f'  evaluating {args.benchmark or ""} {args.split}, {shots}-shot (log: {log})')
            cli = ['--split', args.split, '--shots', str(shots), '--work-dir', work_dir]
            if args.benchmark:
                cli += ['--benchmark', args.benchmark, '--data', args.data]
            ok, last = tool(
                'test.py', config, checkpoint, *cli, *(['--cfg-options', *options] * bool(options)), log=log
            )
            if not ok:
                run.status, run.error, run.log = 'failed', f'{shots}-shot evaluation: {last}', log
                say(f'  evaluation FAILED ({last}); see {log}')
                return
        with open(result) as f:
            record = json.load(f)
        run.metrics[f'{args.split} {shots}-shot'] = record['images']
        run.seconds['evaluation'] = run.seconds.get('evaluation', 0.0) + record.get('seconds', 0.0)
        if record.get('question only'):
            run.references['question only'] = record['question only']


def profile(config: str, options: list[str], run: RunResult, profile_only: bool) -> None:
    """Cost figures from ``vlkit.analysis.profile_config``; a failure is noted, not fatal."""
    try:
        from vlkit.analysis import profile_config

        run.profile = profile_config(load_config(config, parse_options(options)), profile_only=profile_only)
    except Exception as err:  # noqa: BLE001 - one architecture's failure must not lose the others
        note = f'profiling: {type(err).__name__}: {err}'
        run.error = f'{run.error}; {note}' if run.error else note
        say(f'  profiling FAILED ({note})')


def run_precision(cfg: Config) -> str:
    """The precision tools/train.py will run ``cfg`` at on this machine ('fp32' or 'bf16')."""
    from vlkit.engine import resolve_precision, run_device

    return resolve_precision(cfg.get('precision'), run_device())


def training_samples(cfg: Config) -> int | None:
    """Samples a run sees: iterations x batch size (None for a config without a training schedule)."""
    iters = cfg.get('train_cfg', {}).get('max_iters')
    batch = cfg.get('train_dataloader', {}).get('batch_size')
    return iters * batch if iters and batch else None


def takes_seed(cfg: Config) -> bool:
    """Whether the training dataset's class takes a ``seed`` (every built-in one does)."""
    import inspect

    from vlkit.registry import DATASETS, component_class

    DATASETS.import_from_location()
    dataset = component_class(DATASETS, cfg.get('train_dataloader', {}).get('dataset', {}).get('type'))
    if dataset is None:
        return False
    parameters = inspect.signature(dataset).parameters.values()
    return any(p.name == 'seed' or p.kind is p.VAR_KEYWORD for p in parameters)


def seed_options(cfg: Config, seed: int) -> list[str]:
    """The options of a run with ``seed``: none for the config's own seed (so its runs are reused whatever
    ``--seeds``), else the model's seed and, where the dataset takes one, its stream's seed."""
    if seed == (cfg.get('randomness', {}).get('seed') or 0):
        return []
    options = [f'randomness.seed={seed}']
    if takes_seed(cfg):
        options.append(f'train_dataloader.dataset.seed={seed}')
    else:
        say(f'  the training dataset takes no seed: seed {seed} changes the model initialisation only')
    return options


def compare_one(variant: Variant, args: argparse.Namespace, options: list[str], k: int = 0) -> RunResult:
    """Writes the variant's config, then trains, evaluates and profiles it with its ``k``-th seed (the
    config's seed + k; work dir ``OUT/NAME`` for k = 0, ``OUT/NAME-seedS`` for the others)."""
    # beside the work dir, not in it: the Runner writes its assembled config there under the same name
    config = osp.join(args.out, 'configs', f'{variant.name}.py')
    os.makedirs(osp.dirname(config), exist_ok=True)
    variant.cfg.dump(config)
    config_seed = variant.cfg.get('randomness', {}).get('seed') or 0
    options = [*options, *seed_options(variant.cfg, config_seed + k)]
    work_dir = osp.join(args.out, variant.name if k == 0 else f'{variant.name}-seed{config_seed + k}')
    with open(config) as f:
        digest = config_hash(f.read(), options)
    cfg = load_config(config, parse_options(options))
    # the precision this machine runs the config at is part of the run's identity
    digest = config_hash(f'{digest}|precision={run_precision(cfg)}', [])
    run = RunResult(
        name=variant.name,
        connector=cfg.model.connector.type,
        fusion=cfg.model.fusion.type,
        status='profiled' if args.profile_only else 'trained',
        tokens_note=variant.tokens_note,
        work_dir=work_dir,
        config_hash=digest,
        seed=cfg.get('randomness', {}).get('seed'),
        train_samples=training_samples(cfg),
        train_iters=cfg.get('train_cfg', {}).get('max_iters'),
    )
    if not args.profile_only:
        os.makedirs(work_dir, exist_ok=True)
        train(config, work_dir, options, run, args.force)
        if not run.failed:
            run.seconds['training'] = training_seconds(work_dir)
            evaluate(config, work_dir, options, run, args)
        run.loss_curve = load_loss_curve(work_dir)
    if k == 0:  # the costs do not depend on the seed: profiled once per architecture
        say('  profiling')
        profile(config, options, run, args.profile_only)
    return run


def trained(runs: list[RunResult]) -> str:
    """What the runs trained, from their own configs (with every option applied): iterations and batch."""
    done = sorted({
        f'{r.train_iters} iterations of batch {r.train_samples // r.train_iters}'
        for r in runs if r.train_iters and r.train_samples
    })  # fmt: skip
    return '; '.join(done) or 'no run trained'


def resolve_split(args: argparse.Namespace) -> None:
    """``--split`` default: ``val``, or a benchmark folder's only split (``tools/test.py`` does the same)."""
    if args.benchmark:
        from vlkit.data.shards import read_manifest

        args.data = args.data or osp.join('data', args.benchmark)
        splits = read_manifest(args.data)['splits']
        args.split = args.split or (next(iter(splits)) if len(splits) == 1 else None)
        if args.split not in splits:
            raise SystemExit(f'--benchmark: {args.data} has splits {sorted(splits)}; name one with --split')
    args.split = args.split or 'val'


def main(argv=None) -> list[RunResult]:
    args = parse_args(argv)
    resolve_split(args)
    started = time.monotonic()
    todo = variants(args)
    options = run_options(args)
    if args.seeds < 1:
        raise SystemExit(f'--seeds must be at least 1, got {args.seeds}')
    seeds = f' x {args.seeds} seeds' if args.seeds > 1 else ''
    say(f'comparing {len(todo)} architectures{seeds} into {args.out}: {", ".join(v.name for v in todo)}')
    runs = []
    for i, variant in enumerate(todo, 1):
        for k in range(args.seeds if not args.profile_only else 1):
            label = f'{variant.name}' + (f' (seed {k + 1}/{args.seeds})' if args.seeds > 1 else '')
            say(f'[{i}/{len(todo)}] {label}')
            start = time.monotonic()
            try:
                runs.append(compare_one(variant, args, options, k))
            except Exception as err:  # noqa: BLE001 - e.g. a config that does not load: report it, go on
                runs.append(RunResult(variant.name, status='failed', error=f'{type(err).__name__}: {err}'))
                say(f'  FAILED: {runs[-1].error}')
            say(f'[{i}/{len(todo)}] {label}: {runs[-1].status} ({time.monotonic() - start:.0f} s)')
    data = args.benchmark or "the config's test data"
    meta = {
        'command': ' '.join(['tools/compare.py', *(argv if argv is not None else sys.argv[1:])]),
        'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
        'visual tokens asked for': args.tokens or 'as configured',
        'training': 'none (--profile-only)' if args.profile_only else trained(runs),
        'seeds per architecture': args.seeds,
        'evaluation': 'none' if args.profile_only else f'{data}, {args.split} split, shots {args.shots}',
        'wall seconds': round(time.monotonic() - started),
    }
    written = write_report(runs, args.out, meta)
    failed = [r.name for r in runs if r.failed]
    say(
        f'report: {written["report.md"]}, {written["report.html"]}'
        + (f'; FAILED: {failed}' if failed else '')
    )
    return runs


if __name__ == '__main__':
    sys.exit(1 if any(r.failed for r in main()) else 0)
