"""The comparison report (vlkit.analysis.report) on made-up runs, and tools/compare.py end to end, tiny."""

from __future__ import annotations

import base64
import json
import os
import re

from vlkit.analysis.report import RunResult, load_loss_curve, pareto_front, write_report


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
    written = write_report(runs, str(tmp_path), meta={'command': 'tools/compare.py ...'})
    assert set(written) >= {'report.md', 'report.html', 'results.json', 'loss', 'flops', 'tokens', 'costs'}
    md = (tmp_path / 'report.md').read_text()
    for run in runs:
        assert len(re.findall(rf'^\| {run.name} \|', md, flags=re.M)) == 3  # overview, cost, quality
    assert 'exact_match/colour' in md and '55.0' in md and 'torch version' in md
    assert 'failed: exit code 1' in md and '/x/train.log' in md
    page = (tmp_path / 'report.html').read_text()
    assert 'src="http' not in page and '<link' not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4 and all(base64.b64decode(i).startswith(b'\x89PNG') for i in images)
    assert json.loads((tmp_path / 'results.json').read_text())['runs'][3]['status'] == 'failed'


def test_loss_curve_merges_the_runs_of_a_work_dir(tmp_path):
    runs = {'20260101_000000': [(1, 3.0), (2, 2.0)], '20260101_010000': [(2, 1.5), (3, 1.0)]}  # then a resume
    for stamp, lines in runs.items():
        os.makedirs(tmp_path / stamp / 'vis_data')
        with open(tmp_path / stamp / 'vis_data' / 'scalars.json', 'w') as f:
            for step, loss in lines:
                f.write(json.dumps({'loss': loss, 'step': step, 'lr': 0.1}) + '\n')
            f.write(json.dumps({'exact_match/overall': 3.0, 'step': 3}) + '\n')
    assert load_loss_curve(str(tmp_path)) == [(1, 3.0), (2, 1.5), (3, 1.0)]
