"""The comparison report (vlkit.analysis.report) on made-up runs, and tools/compare.py end to end, tiny."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest

from vlkit.analysis.report import (
    PLOTS,
    RunResult,
    Spread,
    by_architecture,
    load_loss_curve,
    loss_figure,
    pareto_figure,
    pareto_front,
    write_report,
)
from vlkit.testing import tiny_options

ROOT = Path(__file__).resolve().parents[1]


def _run(name: str, tokens: int, flops: float, overall: float, **kwargs) -> RunResult:
    profile = {
        'params/total': 2_000_000 + tokens * 1000,
        'params/trainable': 1_000_000,
        'visual_tokens_per_image': tokens,
        'flops/forward_per_sample': flops,
        'flops/train_step_per_sample': 3 * flops,
        'speed/train_samples_per_s': 50.0,
        'speed/time_to_first_token_ms': 4.0,
    }
    metrics = {'val 0-shot': {'exact_match/colour': overall - 5, 'exact_match/overall': overall}}
    return RunResult(
        name=name,
        connector=name.split('+')[0],
        fusion='AutoregressiveFusion',
        profile=profile,
        metrics=metrics,
        train_samples=160,
        loss_curve=[(1, 5.0), (2, 4.0 - tokens / 100)],
        **kwargs,
    )


def test_pareto_front_keeps_only_unbeaten_points():
    points = [(1.0, 10.0), (2.0, 30.0), (3.0, 20.0), (4.0, 40.0), (None, 99.0), (2.0, 25.0)]
    assert pareto_front(points) == [0, 1, 3]


def test_report_has_one_row_per_architecture_plots_and_a_failure(tmp_path):
    runs = [
        _run('linear', 16, 1e9, 40.0),
        _run('perceiver', 8, 2e9, 55.0),
        _run('qformer', 8, 3e9, 50.0),
        RunResult(name='c_abstractor', status='failed', error='exit code 1', log='/x/train.log'),
    ]
    runs[0].references = {'question only': {'colour': 12.5, 'overall': 25.0}}
    written = write_report(runs, str(tmp_path), meta={'command': 'tools/compare.py ...'})
    assert set(written) >= {'report.md', 'report.html', 'results.json', 'loss', 'flops', 'tokens', 'costs'}
    md = (tmp_path / 'report.md').read_text()
    for run in runs:
        assert len(re.findall(rf'^\| {run.name} \|', md, flags=re.M)) == 3  # overview, cost, quality
    assert 'exact_match/colour' in md and '55.0' in md and 'torch version' in md
    assert 'failed: exit code 1' in md and '/x/train.log' in md
    assert '| question only | reference | 12.5 | 25.0 |' in md
    page = (tmp_path / 'report.html').read_text()
    assert 'src="http' not in page and '<link' not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4 and all(base64.b64decode(i).startswith(b'\x89PNG') for i in images)
    assert json.loads((tmp_path / 'results.json').read_text())['runs'][3]['status'] == 'failed'


def test_spread_is_the_mean_and_the_sample_standard_deviation():
    assert Spread.of([50.0, 54.0, 58.0]) == Spread(54.0, 4.0, 3)  # sqrt((16 + 0 + 16) / 2)
    assert Spread.of([61.0]) == Spread(61.0, None, 1) and Spread.of([]) is None
    assert str(Spread(54.0, 4.0, 3)) == '54.0 ± 4.0' and str(Spread(61.0, None, 1)) == '61.0'


def _seeded(name: str, overalls: list[float], losses: list[float]) -> list[RunResult]:
    """One run per seed of an architecture; the first seed's run is the profiled one."""
    runs = []
    for seed, (overall, loss) in enumerate(zip(overalls, losses, strict=True)):
        run = _run(
            name, 16, 1e9 if name == 'linear' else 2e9, overall, seed=seed, work_dir=f'/w/{name}-{seed}'
        )
        run.loss_curve = [(1, 5.0), (2, loss)]
        run.profile = run.profile if seed == 0 else {}
        runs.append(run)
    return runs


def test_seeds_are_aggregated_into_means_spreads_error_bars_and_a_runs_table(tmp_path):
    runs = _seeded('linear', [50.0, 54.0, 58.0], [2.0, 3.0, 4.0]) + _seeded(
        'mlp', [60.0, 61.0, 62.0], [1, 1, 1]
    )
    runs[1].status, runs[1].metrics = 'failed', {}  # a failed seed is left out of the mean, and said
    linear, mlp = by_architecture(runs)
    assert linear.quality('val 0-shot') == Spread(54.0, 4 * 2**0.5, 2)  # seeds 0 and 2: 50, 58
    assert linear.status() == 'trained x2, failed x1' and linear.seeds == [0, 1, 2]
    assert [(step, s.mean, s.std) for step, s in linear.loss_band()] == [(1, 5.0, 0.0), (2, 3.0, 1.0)]

    fig = pareto_figure([linear, mlp], [1.0, 2.0], 'training compute (FLOPs, 2·MAC)', 'val 0-shot')
    bars = [c for c in fig.axes[0].containers if type(c).__name__ == 'ErrorbarContainer']
    ((low, high),) = (seg[:, 1] for seg in bars[1].lines[2][0].get_segments())  # mlp: 61 ± 1
    assert len(bars) == 2 and (low, high) == pytest.approx((60.0, 62.0))
    band = loss_figure([linear, mlp]).axes[0].collections[0]  # linear's ± std band
    edges = {tuple(v) for v in band.get_paths()[0].vertices.round(6).tolist()}
    assert {(2.0, 2.0), (2.0, 4.0), (1.0, 5.0)} == {v for v in edges if v[0] in (1.0, 2.0)}  # 3 ± 1 at step 2

    write_report(runs, str(tmp_path))
    md = (tmp_path / 'report.md').read_text()
    assert '## Quality (mean ± sample standard deviation over 3 seeds)' in md
    assert '| linear | trained x2, failed x1: ' not in md  # no error words invented
    assert '| mlp | trained x3 | 56.0 ± 1.0 | 61.0 ± 1.0 |' in md  # colour is overall - 5
    assert (
        '| linear | 1 | failed | /w/linear-1 | failed |' in md
        and '| mlp | 2 | trained | /w/mlp-2 | 62.0 |' in md
    )
    assert _rows(md, 'linear') == 3 + 3  # overview, cost, quality, and one row per seed
    summary = json.loads((tmp_path / 'results.json').read_text())['architectures']
    assert summary['mlp']['scores']['val 0-shot: exact_match/overall'] == {'mean': 61.0, 'std': 1.0, 'n': 3}


def test_html_tables_scroll_within_the_page():
    from html.parser import HTMLParser

    class Nesting(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.tables_in_scrollers = [], 0

        def handle_starttag(self, tag, attrs):
            if tag == 'table' and self.stack and self.stack[-1] == ('div', 'table'):
                self.tables_in_scrollers += 1
            self.stack.append((tag, dict(attrs).get('class')))

        def handle_endtag(self, tag):
            self.stack.pop()

    from vlkit.analysis.report import html_report

    page = html_report([_run('linear', 16, 1e9, 40.0)], {}, {}, {}, '')
    parser = Nesting()
    parser.feed(page)
    assert parser.tables_in_scrollers == page.count('<table>') == 3
    assert re.search(r'div\.table \{ overflow-x: auto;', page)


def test_loss_curve_merges_the_runs_of_a_work_dir(tmp_path):
    runs = {'20260101_000000': [(1, 3.0), (2, 2.0)], '20260101_010000': [(2, 1.5), (3, 1.0)]}  # then a resume
    for stamp, lines in runs.items():
        os.makedirs(tmp_path / stamp / 'vis_data')
        with open(tmp_path / stamp / 'vis_data' / 'scalars.json', 'w') as f:
            for step, loss in lines:
                f.write(json.dumps({'loss': loss, 'step': step, 'lr': 0.1}) + '\n')
            f.write(json.dumps({'exact_match/overall': 3.0, 'step': 3}) + '\n')
    assert load_loss_curve(str(tmp_path)) == [(1, 3.0), (2, 1.5), (3, 1.0)]


def _compare_tool():
    """tools/compare.py as a module (it runs train.py and test.py as subprocesses itself)."""
    if 'compare_tool' not in sys.modules:
        spec = importlib.util.spec_from_file_location('compare_tool', ROOT / 'tools' / 'compare.py')
        sys.modules['compare_tool'] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules['compare_tool'])
    return sys.modules['compare_tool']


def _tiny_options(root: str) -> list[str]:
    # the logger interval is left to --max-iters, which logs every iteration of a short run
    return [f'{k}={v}' for k, v in tiny_options(root, 2).items() if k != 'default_hooks.logger.interval']


def _rows(table: str, name: str) -> int:
    return len(re.findall(rf'^\| {re.escape(name)} \|', table, flags=re.M))


@pytest.mark.slow
def test_compare_trains_evaluates_profiles_reports_and_reuses(synthetic_root, tmp_path, capsys):
    compare = _compare_tool()
    out = str(tmp_path / 'cmp')
    # 5 tokens: the C-Abstractor, which pools to a square grid, fails; the comparison goes on
    args = ['configs/blip3_perceiver.py', '--tokens', '5', '--max-iters', '2', '--out', out]
    runs = compare.main(
        [*args, '--connectors', 'linear', 'c_abstractor', '--shots', '0', '1']
        + ['--cfg-options', *_tiny_options(synthetic_root)]
    )
    assert [r.status for r in runs] == ['trained', 'failed']
    for name in ('report.md', 'report.html', 'results.json', *PLOTS.values()):
        assert os.path.isfile(os.path.join(out, name)), name
    md = open(os.path.join(out, 'report.md')).read()
    assert _rows(md, 'linear') == 3 and _rows(md, 'c_abstractor') == 3
    assert 'val 0-shot: exact_match/overall' in md and 'val 1-shot: exact_match/text' in md
    assert 'flops/train_step_per_sample (GFLOP)' in md
    assert '16 (no token knob, not 5)' in md  # the linear projector keeps its 4 x 4 grid of tokens
    assert os.path.join(out, 'c_abstractor', 'train.log') in md and 'failed: training: exit code 1' in md
    written = json.load(open(os.path.join(out, 'linear', 'accuracy_val_0shot_iter_2.json')))
    assert runs[0].loss_curve and runs[0].metrics['val 0-shot'] == written['images']  # what test.py wrote
    linear_row = next(line for line in md.splitlines() if line.startswith('| linear | trained |'))
    assert f'| {written["images"]["exact_match/overall"]:.1f} |' in linear_row
    assert '**exact_match/overall**: the mean of the per-task accuracies' in md  # what overall means
    assert (
        "connector = dict(type='LinearProjector')" in open(os.path.join(out, 'configs', 'linear.py')).read()
    )

    capsys.readouterr()
    again = compare.main(
        [
            *args,
            '--connectors',
            'linear',
            '--shots',
            '0',
            '1',
            '--cfg-options',
            *_tiny_options(synthetic_root),
        ]
    )
    assert again[0].status == 'reused' and 'reusing the finished run' in capsys.readouterr().out
    assert again[0].metrics == runs[0].metrics and again[0].config_hash == runs[0].config_hash


def _header(page: str) -> dict[str, str]:
    """The report page's header facts (its ``<dl>``), parsed as a reader's browser would."""
    from html.parser import HTMLParser

    class Facts(HTMLParser):
        def __init__(self):
            super().__init__()
            self.facts, self.tag, self.key = {}, None, None

        def handle_starttag(self, tag, attrs):
            self.tag = tag

        def handle_data(self, data):
            if self.tag == 'dt':
                self.key = data
            elif self.tag == 'dd' and self.key:
                self.facts[self.key] = self.facts.get(self.key, '') + data

        def handle_endtag(self, tag):
            self.tag = None

    parser = Facts()
    parser.feed(page)
    return parser.facts


@pytest.mark.slow
def test_seeds_run_each_architecture_n_times_reuse_and_report_what_ran(synthetic_root, tmp_path):
    import torch
    from mmengine.config import Config

    compare = _compare_tool()
    out = str(tmp_path / 'seeds')
    options = [*_tiny_options(synthetic_root), 'train_cfg.max_iters=3', 'default_hooks.logger.interval=1']
    args = ['configs/llava_mlp.py', '--out', out, '--cfg-options', *options]
    first = compare.main([*args, '--seeds', '1'])
    assert [(r.seed, r.status, os.path.basename(r.work_dir)) for r in first] == [(0, 'trained', 'llava_mlp')]
    runs = compare.main([*args, '--seeds', '2'])
    assert [(r.seed, r.status, os.path.basename(r.work_dir)) for r in runs] == [
        (0, 'reused', 'llava_mlp'),
        (1, 'trained', 'llava_mlp-seed1'),
    ]
    assert runs[0].loss_curve[0][1] != runs[1].loss_curve[0][1]  # another initialisation and data stream
    # the config the training ran, as its checkpoint records it
    checkpoint = torch.load(os.path.join(runs[1].work_dir, 'iter_3.pth'), weights_only=False)
    ran = Config.fromstring(checkpoint['meta']['cfg'], '.py')
    assert (ran.randomness.seed, ran.train_dataloader.dataset.seed) == (1, 1)
    header = _header(open(os.path.join(out, 'report.html')).read())
    batch = ran.train_dataloader.batch_size
    assert (
        header['training']
        == f'{ran.train_cfg.max_iters} iterations of batch {batch}'
        == f'3 iterations of batch {batch}'
    )
    assert header['seeds per architecture'] == '2'
    md = open(os.path.join(out, 'report.md')).read()
    assert 'over 2 seeds' in md and _rows(md, 'llava_mlp') == 3 + 2  # three tables, then a row per seed

    # seed 1 as if killed after its checkpoint at iteration 2: the next comparison resumes it from there
    seed1 = runs[1].work_dir
    straight = torch.load(os.path.join(seed1, 'iter_3.pth'), weights_only=False)['state_dict']
    for done in ('iter_3.pth', 'accuracy_val_0shot_iter_3.json'):
        os.remove(os.path.join(seed1, done))
    with open(os.path.join(seed1, 'last_checkpoint'), 'w') as f:
        f.write(os.path.join(seed1, 'iter_2.pth'))
    resumed = compare.main([*args, '--seeds', '2'])
    assert [(r.seed, r.status) for r in resumed] == [(0, 'reused'), (1, 'resumed')]
    log = open(resumed[1].log).read()
    assert 'resuming from' in log and 'iter_2.pth' in log and log.count('Iter(train) [1/3]') == 1
    state = torch.load(os.path.join(seed1, 'iter_3.pth'), weights_only=False)['state_dict']
    assert state.keys() == straight.keys() and all(torch.equal(state[k], straight[k]) for k in straight)
    assert resumed[1].metrics == runs[1].metrics
    with pytest.raises(SystemExit, match='--seeds must be at least 1, got 0'):
        compare.main([*args, '--seeds', '0'])


def test_profile_only_reports_the_cost_half(synthetic_root, tmp_path):
    out = str(tmp_path / 'cost')
    configs = ['configs/llava_mlp.py', 'configs/blip2_qformer.py']
    runs = _compare_tool().main(
        [*configs, '--profile-only', '--out', out, '--cfg-options', *_tiny_options(synthetic_root)]
    )
    assert [(r.name, r.status) for r in runs] == [('llava_mlp', 'profiled'), ('blip2_qformer', 'profiled')]
    assert all(r.profile['params/total'] > 0 and r.profile['speed/train_samples_per_s'] is None for r in runs)
    md = open(os.path.join(out, 'report.md')).read()
    assert _rows(md, 'llava_mlp') == 2 and '## Quality' not in md
    assert os.path.isfile(os.path.join(out, 'costs.png'))
    assert not os.path.exists(os.path.join(out, 'llava_mlp'))  # no work dir without training


def test_unknown_preset_names_the_available_ones(tmp_path):
    with pytest.raises(SystemExit, match=r"no preset 'mlpp'.*'mlp'"):
        _compare_tool().main(['configs/blip3_perceiver.py', '--connectors', 'mlpp', '--out', str(tmp_path)])


def test_presets_replace_the_connector_whole_and_tokens_go_to_each_knob():
    args = _compare_tool().parse_args(
        ['configs/blip3_perceiver.py', '--connectors', 'qformer', 'perceiver', 'c_abstractor', 'mlp']
        + ['--fusions', 'autoregressive', 'cross_attention', '--tokens', '9']
    )
    found = {v.name: v for v in _compare_tool().variants(args)}
    assert len(found) == 8 and 'qformer+cross_attention' in found
    qformer = found['qformer+cross_attention'].cfg
    assert qformer.connector.num_queries == 9 and 'num_latents' not in qformer.connector  # not merged
    assert qformer.fusion.type == 'CrossAttentionFusion' and found['mlp+autoregressive'].cfg.fusion == {
        'type': 'AutoregressiveFusion'
    }
    assert found['perceiver+autoregressive'].cfg.connector.num_latents == 9
    assert found['c_abstractor+autoregressive'].cfg.connector.num_tokens == 9
    assert found['mlp+autoregressive'].tokens_note == 'no token knob, not 9'
    assert found['perceiver+autoregressive'].tokens_note == ''


def test_benchmark_evaluation_reads_the_prepared_folder(tmp_path, monkeypatch):
    """--benchmark passes to tools/test.py with its folder; the split defaults to the folder's only one."""
    compare = _compare_tool()
    (tmp_path / 'gqa').mkdir()
    (tmp_path / 'gqa' / 'manifest.json').write_text(
        json.dumps({'splits': {'test-dev': {'num_samples': 2, 'shards': []}}})
    )
    args = compare.parse_args(['configs/llava_mlp.py', '--benchmark', 'gqa', '--data', str(tmp_path / 'gqa')])
    compare.resolve_split(args)
    assert args.split == 'test-dev'
    calls = []
    monkeypatch.setattr(compare, 'tool', lambda name, *a, log: calls.append((name, a)) or (False, 'stopped'))
    monkeypatch.setattr(compare, 'last_checkpoint', lambda work_dir: str(tmp_path / 'iter_5.pth'))
    run = RunResult('x', status='trained')
    compare.evaluate('configs/llava_mlp.py', str(tmp_path / 'run'), [], run, args)
    ((name, cli),) = calls
    assert (
        name == 'test.py'
        and cli[cli.index('--benchmark') + 1] == 'gqa'
        and cli[cli.index('--split') + 1] == 'test-dev'
    )
    assert cli[cli.index('--data') + 1] == str(tmp_path / 'gqa')
    with pytest.raises(SystemExit):
        compare.parse_args(['configs/llava_mlp.py', '--benchmark', 'vqa3'])
