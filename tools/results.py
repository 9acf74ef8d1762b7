"""The figures the README and the docs show, kept as small files in docs/results/ and rendered into them.

    python tools/results.py collect-demo WORK_DIR [--data-root DIR] [--name NAME --command TEXT]
    python tools/results.py collect-compare OUT                        # after tools/compare.py --out OUT
    python tools/results.py render [--check]

``collect-demo`` reads what ``make demo`` wrote into its work dir (``timings.json`` from tools/train.py,
``accuracy_val.json`` from ``tools/test.py --compare-blank``, the training log's per-iteration times) and the
benchmark's manifest, and writes ``docs/results/default_run.json`` (``--name``: another name, for another
run of the default such as ``make demo OPTIONS=precision=bf16``) with the commit, date and machine.
``collect-compare`` keeps the figures of a comparison's ``results.json`` in
``docs/results/compare_default.json`` and copies its two plots into ``docs/images/``; ``tools/chat.py --save
NAME`` keeps an answer in ``docs/results/NAME.json``. ``render`` rewrites each block between
``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` of the README and docs/*.md from
``docs/results/NAME.json``; with ``--check`` it changes nothing and exits 1 when a file differs
(tests/test_results.py runs it).
"""

from __future__ import annotations

import argparse
import glob
import json
import os.path as osp
import re
import shutil
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout without installing

RESULTS = osp.join(ROOT, 'docs', 'results')
README = osp.join(ROOT, 'README.md')
DOCS = osp.join(ROOT, 'docs')  # every *.md here is rendered too
COMPARE_PLOTS = {'quality_vs_train_flops.png': 'compare_quality_vs_train_flops.png',
                 'loss_curves.png': 'compare_loss_curves.png'}  # fmt: skip


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _write(path: str, record: dict) -> None:
    with open(path, 'w') as f:
        json.dump(record, f, indent=1, sort_keys=False)
        f.write('\n')
    print(f'wrote {osp.relpath(path, ROOT)}')


def _provenance(env: dict | None = None, date: str | None = None) -> dict:
    """Commit, date and machine: a run's own (``env``, as tools/compare.py records it), else this one's."""
    from vlkit.analysis.report import environment

    env = env or environment()
    machine = f'{env["cpu"]}, {env["cores"]} cores, {env["threads"]} threads, torch {env["torch version"]}'
    return {'commit': env.get('vlkit commit'), 'date': date or time.strftime('%Y-%m-%d'), 'machine': machine}


def _iteration_times(work_dir: str) -> tuple[float | None, float | None]:
    """Median seconds per training iteration and median data_time share, from the newest run's log."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not logs:
        return None, None
    rows = [json.loads(line) for line in open(logs[-1])]
    times = [r['time'] for r in rows if 'time' in r and 'loss' in r]
    data = [r['data_time'] / r['time'] for r in rows if 'data_time' in r and 'loss' in r and r['time']]
    return (statistics.median(times) if times else None), (statistics.median(data) if data else None)


def collect_demo(
    work_dir: str, data_root: str, name: str = 'default_run', command: str = 'make demo'
) -> dict:
    from vlkit.engine import read_last_checkpoint

    accuracy = _load(osp.join(work_dir, 'accuracy_val.json'))
    timings = _load(osp.join(work_dir, 'timings.json'))
    manifest = _load(osp.join(data_root, 'manifest.json'))
    per_iteration, data_share = _iteration_times(work_dir)
    checkpoint = read_last_checkpoint(work_dir) or ''
    iterations = int(re.search(r'iter_(\d+)', checkpoint).group(1)) if 'iter_' in checkpoint else None
    seconds = {
        'data_generation': manifest.get('generation_seconds'),
        'encoder_pretraining': timings.get('encoder_pretraining'),
        'training': round(timings['training'] - (manifest.get('generation_seconds') or 0), 1),
        'evaluation': accuracy.get('seconds'),
    }
    record = {
        'command': command,
        **_provenance(),
        'benchmark_format': manifest.get('format_version'),
        'iterations': iterations,
        'seconds': seconds,
        'seconds_per_iteration': per_iteration and round(per_iteration, 3),
        'data_time_share': data_share and round(data_share, 3),
        'accuracy': {
            k: accuracy[k] for k in ('images', 'blank images', 'gain', 'question only') if k in accuracy
        },
    }
    _write(osp.join(RESULTS, f'{name}.json'), record)
    return record


def collect_compare(out: str) -> dict:
    results = _load(osp.join(out, 'results.json'))
    runs = []
    for run in _one_per_architecture(results['runs']):
        metrics = next(iter(run['metrics'].values()), {})
        runs.append({
            'name': run['name'], 'status': run['status'],
            'connector': run['connector'], 'fusion': run['fusion'],
            'visual_tokens': run['profile'].get('visual_tokens_per_image'),
            'train_flops': run['profile'].get('flops/train_step_per_sample') and run['train_samples']
            and run['profile']['flops/train_step_per_sample'] * run['train_samples'],
            'seconds': run.get('seconds', {}),
            'accuracy': {k.split('/')[-1]: v for k, v in metrics.items()},
            **({'seeds': run['seeds'], 'accuracy_std': run['std']} if run.get('seeds', 1) > 1 else {}),
        })  # fmt: skip
    references = next((r['references'] for r in results['runs'] if r.get('references')), {})
    from vlkit.data.synthetic import FORMAT_VERSION  # compare regenerates the data of another format

    record = {
        'command': results['meta'].get('command'),
        **_provenance(results.get('environment'), (results['meta'].get('date') or '')[:10] or None),
        'benchmark_format': FORMAT_VERSION,
        'training': results['meta'].get('training'),
        'evaluation': results['meta'].get('evaluation'),
        'wall_seconds': results['meta'].get('wall seconds'),
        'runs': runs,
        'question_only': references.get('question only'),
    }
    for source, target in COMPARE_PLOTS.items():
        shutil.copyfile(osp.join(out, source), osp.join(ROOT, 'docs', 'images', target))
    _write(osp.join(RESULTS, 'compare_default.json'), record)
    return record


def _one_per_architecture(runs: list[dict]) -> list[dict]:
    """A comparison's runs, one per architecture: a run of several seeds (``--seeds N``) becomes its first
    seed's record with each score's mean over the finished seeds (``metrics``), its sample standard deviation
    (``std``, task -> value) and ``seeds``, as the comparison's own report computes them (``Spread``)."""
    from vlkit.analysis.report import Spread

    by_name: dict[str, list[dict]] = {}
    for run in runs:
        by_name.setdefault(run['name'], []).append(run)
    merged = []
    for seeds in by_name.values():
        done = [r for r in seeds if r['status'] != 'failed' and r['metrics']]
        if len(done) < 2:
            merged.append(seeds[0])
            continue
        split = next(iter(done[0]['metrics']))
        spreads = {k: Spread.of([r['metrics'][split][k] for r in done]) for k in done[0]['metrics'][split]}
        mean = {k: spread.mean for k, spread in spreads.items()}
        std = {k.split('/')[-1]: spread.std for k, spread in spreads.items()}
        merged.append({**done[0], 'metrics': {split: mean}, 'std': std, 'seeds': len(done)})
    return merged


def _minutes(seconds: float) -> str:
    return f'{int(seconds // 60)} min {round(seconds % 60):02d} s'


def _table(
    columns: dict[str, dict[str, float]], spreads: dict[str, dict[str, float]] | None = None
) -> list[str]:
    """A task-by-column table of accuracies; ``spreads`` adds `` ± std`` to the columns it names."""
    from vlkit.data.synthetic import TASKS

    spreads = spreads or {}
    tasks = [t for t in sorted(TASKS) if any(t in c for c in columns.values())] + ['overall']
    lines = ['| task | ' + ' | '.join(columns) + ' |', '|---|' + '---|' * len(columns)]
    for task in tasks:
        cells = []
        for name, scores in columns.items():
            value, spread = scores.get(task), spreads.get(name, {}).get(task)
            cell = '—' if value is None else f'{value:.1f}'
            cells.append(cell if spread is None or value is None else f'{cell} ± {spread:.1f}')
        lines.append(f'| {task} | {" | ".join(cells)} |')
    return lines


def render_default_run(r: dict) -> str:
    s = r['seconds']
    total = sum(v for v in s.values() if v)
    per_it = f', {r["seconds_per_iteration"]} s each' if r.get('seconds_per_iteration') else ''
    acc = {name: {k.split('/')[-1]: v for k, v in values.items()} for name, values in r['accuracy'].items()}
    lines = [
        f'`{r["command"]}` from a fresh clone, {r["machine"]}, commit {r["commit"]} ({r["date"]}, '
        f'benchmark format {r["benchmark_format"]}): '
        f'**{_minutes(total)}** after setup: benchmark generation {s["data_generation"]:.0f} s, encoder '
        f'pretraining {s["encoder_pretraining"]:.0f} s, VLM training {s["training"]:.0f} s '
        f'({r["iterations"]:,} iterations{per_it}, validation included), evaluation with real and blank '
        f'images {s["evaluation"]:.0f} s. Exact-match accuracy (%) on the 1,000 val questions:',
        '',
        *_table(acc),
    ]
    return '\n'.join(lines)


def render_compare_default(r: dict) -> str:
    runs = [x for x in r['runs'] if x['status'] != 'failed']
    by_overall = sorted(runs, key=lambda x: -x['accuracy'].get('overall', 0))
    tokens = ', '.join(f'{x["name"]} {x["visual_tokens"]}' for x in runs)
    wall = f' {_minutes(r["wall_seconds"])} in all.' if r.get('wall_seconds') else ''
    prior = r.get('question_only') or {}
    prior_text = f' The dotted line is the question-only prior ({prior["overall"]:.1f}%).' if prior else ''
    columns = {x['name']: x['accuracy'] for x in by_overall}
    spreads = {x['name']: x['accuracy_std'] for x in by_overall if x.get('accuracy_std')}
    if prior:
        columns['question only'] = prior
    seeds = {x.get('seeds', 1) for x in runs}
    what = (
        f'mean ± standard deviation over {seeds.pop()} seeds' if len(seeds) == 1 and spreads else 'one seed'
    )
    return '\n'.join([
        f'*Made by `{r["command"]}` on {r["machine"]}, commit {r["commit"]} ({r["date"]}, benchmark format '
        f'{r["benchmark_format"]}): training {r["training"]}, evaluation {r["evaluation"]}; visual tokens '
        f'per image: {tokens}.{wall}{prior_text} Val accuracy (%, {what}):*',
        '',
        *_table(columns, spreads),
    ])  # fmt: skip


def render_chat_answer(r: dict) -> str:
    """An answer kept by ``tools/chat.py --save NAME`` (``docs/results/chat_*.json``), as the docs show it."""
    template = TEMPLATE_NAMES.get(r['template'], f'the {r["template"]} template')
    return '\n'.join([
        f'`{r["image"]}`, "{r["prompt"]}" in {template}:',
        '',
        f'> {r["answer"]}',
        '',
        f'*{r["checkpoint"]} of {r["config"]}, {r["date"]}.*',
    ])  # fmt: skip


TEMPLATE_NAMES = {
    'chat': 'its chat template', 'vlkit': "vlkit's prompt format", 'plain': "LLaVA's plain template",
    'vicuna_v1': "LLaVA's vicuna_v1 template",
}  # fmt: skip
RENDERERS = {'default_run': render_default_run, 'compare_default': render_compare_default}
BLOCK = re.compile(r'(<!-- results:(\w+) -->\n).*?(\n<!-- /results:\2 -->)', re.DOTALL)


def renderer(name: str):
    """The renderer of a results block: by its name, ``chat_*`` for kept answers, ``default_run_*`` for
    more runs of the default (``collect-demo --name``)."""
    if name.startswith('default_run_'):
        return render_default_run
    return RENDERERS.get(name) or (render_chat_answer if name.startswith('chat_') else None)


def _rendered(text: str) -> str:
    """``text`` with every results block whose ``docs/results/NAME.json`` exists rendered from it."""

    def block(match: re.Match) -> str:
        name = match.group(2)
        path = osp.join(RESULTS, f'{name}.json')
        if renderer(name) is None or not osp.isfile(path):
            return match.group(0)
        return match.group(1) + renderer(name)(_load(path)) + match.group(3)

    return BLOCK.sub(block, text)


def render(check: bool = False) -> list[str]:
    """Rewrites (or, with ``check``, only compares) every results block of the README and docs/*.md;
    returns the files that differed."""
    differ = []
    for path in [README, *sorted(glob.glob(osp.join(DOCS, '*.md')))]:
        with open(path) as f:
            text = f.read()
        new = _rendered(text)
        if new != text:
            differ.append(osp.relpath(path, ROOT))
            if not check:
                with open(path, 'w') as f:
                    f.write(new)
                print(f'{differ[-1]}: results blocks rendered')
    return differ


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest='command', required=True)
    demo = sub.add_parser('collect-demo', help="keep make demo's figures")
    demo.add_argument('work_dir')
    demo.add_argument('--data-root', default='data/synthetic')
    demo.add_argument('--name', default='default_run', help='docs/results/NAME.json (default: default_run)')
    demo.add_argument(
        '--command', dest='made_by', default='make demo', help='what made the run (default: make demo)'
    )
    compare = sub.add_parser('collect-compare', help="keep a comparison's figures and plots")
    compare.add_argument('out')
    check = sub.add_parser('render', help='render the README blocks')
    check.add_argument('--check', action='store_true', help='only compare; exit 1 when they differ')
    args = parser.parse_args(argv)
    if args.command == 'collect-demo':
        collect_demo(args.work_dir, args.data_root, args.name, args.made_by)
    elif args.command == 'collect-compare':
        collect_compare(args.out)
    if args.command == 'render' and args.check:
        differ = render(check=True)
        if differ:
            print(
                f'{", ".join(differ)}: results blocks differ from docs/results/: run tools/results.py render'
            )
        return 1 if differ else 0
    render()
    return 0


if __name__ == '__main__':
    sys.exit(main())
