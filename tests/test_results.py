"""The README's figures come from docs/results/ through tools/results.py: collected from the files the runs
wrote, rendered into the README, and a README edited by hand fails here."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / 'tools'))
import results  # noqa: E402


def test_the_readme_and_docs_blocks_are_what_docs_results_renders():
    assert results.render(check=True) == [], 'differs from docs/results/: run python tools/results.py render'


def _demo_work_dir(tmp_path):
    work_dir, data_root = tmp_path / 'work', tmp_path / 'data'
    (work_dir / 'run' / 'vis_data').mkdir(parents=True)
    data_root.mkdir()
    (work_dir / 'timings.json').write_text(json.dumps({'encoder_pretraining': 120.0, 'training': 310.0}))
    accuracy = {
        'images': {'exact_match/colour': 50.0, 'exact_match/overall': 70.0},
        'blank images': {'exact_match/colour': 20.0, 'exact_match/overall': 30.0},
        'gain': {'exact_match/colour': 30.0, 'exact_match/overall': 40.0},
        'question only': {'colour': 16.0, 'overall': 25.0},
        'seconds': 35.0,
    }
    (work_dir / 'accuracy_val.json').write_text(json.dumps(accuracy))
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_1500.pth'))
    (data_root / 'manifest.json').write_text(json.dumps({'generation_seconds': 10.0}))
    rows = [{'loss': 1.0, 'time': t, 'data_time': 0.01} for t in (0.2, 0.3, 0.1)]
    (work_dir / 'run' / 'vis_data' / 'scalars.json').write_text('\n'.join(map(json.dumps, rows)))
    return work_dir, data_root


def test_collect_demo_keeps_the_files_figures_and_renders_them(tmp_path, monkeypatch):
    monkeypatch.setattr(results, 'RESULTS', str(tmp_path))
    work_dir, data_root = _demo_work_dir(tmp_path)
    record = results.collect_demo(str(work_dir), str(data_root))
    assert record['seconds'] == {
        'data_generation': 10.0, 'encoder_pretraining': 120.0, 'training': 300.0, 'evaluation': 35.0
    }  # fmt: skip
    assert record['iterations'] == 1500 and record['seconds_per_iteration'] == 0.2
    assert record['data_time_share'] == pytest.approx(0.05)
    assert json.loads((tmp_path / 'default_run.json').read_text()) == record
    text = results.render_default_run(record)
    assert '**7 min 45 s** after setup' in text  # 10 + 120 + 300 + 35 s
    assert '1,500 iterations, 0.2 s each' in text
    assert (
        '| colour | 50.0 | 20.0 | 30.0 | 16.0 |' in text and '| overall | 70.0 | 30.0 | 40.0 | 25.0 |' in text
    )


def test_render_rewrites_only_the_marked_block(tmp_path, monkeypatch):
    readme = tmp_path / 'README.md'
    readme.write_text(
        'before\n<!-- results:default_run -->\nold figures\n<!-- /results:default_run -->\nafter\n'
    )
    work_dir, data_root = _demo_work_dir(tmp_path)
    monkeypatch.setattr(results, 'RESULTS', str(tmp_path))
    monkeypatch.setattr(results, 'README', str(readme))
    monkeypatch.setattr(results, 'DOCS', str(tmp_path / 'docs'))  # the repository's docs stay as they are
    results.collect_demo(str(work_dir), str(data_root))
    (differs,) = results.render(check=True)
    assert differs.endswith('README.md') and 'old figures' in readme.read_text()  # checked, not written
    results.render()
    text = readme.read_text()
    assert text.startswith('before\n<!-- results:default_run -->\n`make demo`') and text.endswith('after\n')
    assert 'old figures' not in text and results.render(check=True) == []


def test_another_run_of_the_default_is_kept_under_its_name_and_command(tmp_path, monkeypatch):
    readme = tmp_path / 'README.md'
    readme.write_text('<!-- results:default_run_bf16 -->\nold\n<!-- /results:default_run_bf16 -->\n')
    work_dir, data_root = _demo_work_dir(tmp_path)
    monkeypatch.setattr(results, 'RESULTS', str(tmp_path))
    monkeypatch.setattr(results, 'README', str(readme))
    monkeypatch.setattr(results, 'DOCS', str(tmp_path / 'docs'))  # the repository's docs stay as they are
    command = 'make demo OPTIONS=precision=bf16'
    argv = ['collect-demo', str(work_dir), '--data-root', str(data_root), '--name', 'default_run_bf16']
    assert results.main([*argv, '--command', command]) == 0  # collects, then renders
    assert json.loads((tmp_path / 'default_run_bf16.json').read_text())['command'] == command
    assert not (tmp_path / 'default_run.json').exists()
    assert readme.read_text().startswith(f'<!-- results:default_run_bf16 -->\n`{command}` from a fresh clone')


def test_a_comparison_renders_as_a_task_table_best_first_with_the_prior():
    run = dict(status='done', visual_tokens=16, seconds={})
    record = {
        'command': 'tools/compare.py c.py', 'commit': 'abc1234', 'date': '2026-12-01', 'machine': 'a CPU',
        'benchmark_format': 2, 'training': '10 iterations', 'evaluation': 'val', 'wall_seconds': 75,
        'runs': [dict(run, name='a', accuracy={'spatial': 40.0, 'overall': 41.0}),
                 dict(run, name='b', accuracy={'spatial': 70.25, 'overall': 60.0}),
                 dict(run, name='c', status='failed', accuracy={})],
        'question_only': {'spatial': 50.0, 'overall': 30.0},
    }  # fmt: skip
    lines = results.render_compare_default(record).splitlines()
    assert 'benchmark format 2' in lines[0] and '1 min 15 s in all' in lines[0] and '(30.0%)' in lines[0]
    assert 'Val accuracy (%, one seed)' in lines[0]
    assert lines[2:] == [
        '| task | b | a | question only |',
        '|---|---|---|---|',
        '| spatial | 70.2 | 40.0 | 50.0 |',
        '| overall | 60.0 | 41.0 | 30.0 |',
    ]


def test_a_comparison_of_several_seeds_shows_each_architectures_mean_and_spread():
    def run(name, seed, spatial, status='done'):
        metrics = {'val 0-shot': {'exact_match/spatial': spatial, 'exact_match/overall': spatial / 2}}
        return dict(name=name, seed=seed, status=status, metrics=metrics if status == 'done' else {})

    runs = results._one_per_architecture(
        [run('a', 0, 60.0), run('a', 1, 64.0), run('a', 2, 0.0, 'failed'), run('b', 0, 50.0)]
    )
    assert [(r['name'], r.get('seeds')) for r in runs] == [('a', 2), ('b', None)]  # failed seeds left out
    assert runs[0]['metrics']['val 0-shot']['exact_match/spatial'] == 62.0
    assert runs[0]['std']['spatial'] == pytest.approx(2**0.5 * 2)  # sample std of 60 and 64
    record = {
        'command': 'tools/compare.py c.py --seeds 2', 'commit': 'abc1234', 'date': '2026-12-01',
        'machine': 'a CPU', 'benchmark_format': 3, 'training': '10 iterations', 'evaluation': 'val',
        'runs': [dict(name='a', status='done', visual_tokens=16, seeds=2,
                      accuracy={'spatial': 62.0, 'overall': 31.0},
                      accuracy_std={'spatial': 2.83, 'overall': 1.41})],
    }  # fmt: skip
    lines = results.render_compare_default(record).splitlines()
    assert 'Val accuracy (%, mean ± standard deviation over 2 seeds)' in lines[0]
    assert lines[2:] == ['| task | a |', '|---|---|', '| spatial | 62.0 ± 2.8 |', '| overall | 31.0 ± 1.4 |']
