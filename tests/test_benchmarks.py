"""benchmarks/fusion_scaling.py on its quick setting: the table it prints, and what each fusion runs."""

import contextlib
import io

import pytest
import torch

from benchmarks import fusion_scaling as fs

QUICK = fs.SETTINGS['quick']


def _table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of the one Markdown table in ``text``."""
    lines = [ln for ln in text.splitlines() if ln.startswith('|')]
    cells = [[c.strip() for c in ln.strip('|').split('|')] for ln in lines]
    header, rows = cells[0], cells[2:]  # cells[1] is the |---| rule
    return header, [dict(zip(header, r, strict=True)) for r in rows]


@pytest.fixture(scope='module')
def quick_run():
    """What ``--quick --no-save`` prints, and the modification times of the files it must not write."""
    files = [fs.PLOT, fs.ROOT / 'benchmarks' / 'RESULTS.md']
    saved = {path: path.stat().st_mtime if path.exists() else None for path in files}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        fs.main(['--quick', '--no-save', '--threads', '1', '--repeats', '1'])
    return stdout.getvalue(), saved


def test_quick_run_prints_one_row_per_point_with_every_column(quick_run):
    text, _ = quick_run
    header, rows = _table(text)
    assert header == fs.COLUMNS
    points = [(int(r['images']), int(r['text tokens'])) for r in rows]
    assert points == [(n, t) for n in QUICK.images for t in QUICK.text_tokens]
    for r in rows:
        assert float(r['FA ms']) > 0 and float(r['CA ms']) > 0
        assert float(r['CA / FA']) > 0
        assert float(r['FA peak MiB']) > 0 and float(r['CA peak MiB']) > float(
            r['FA peak MiB']
        )  # + the block
    assert text.splitlines()[0].endswith('GFLOP/s')  # the machine line first


def test_autoregressive_sequence_grows_with_images_while_cross_attention_keeps_the_text(quick_run):
    _, rows = _table(quick_run[0])
    m = QUICK.visual_tokens
    for r in rows:
        n, t = int(r['images']), int(r['text tokens'])
        assert int(r['FA tokens']) == t + n * (m - 1)  # each <image> marker becomes M tokens
        assert int(r['CA tokens']) == t  # the markers stay; the images are keys of the block
        assert int(r['CA visual keys']) == n * m
    for t in QUICK.text_tokens:
        fa_flops = [float(r['FA GFLOP']) for r in rows if int(r['text tokens']) == t]
        assert fa_flops == sorted(fa_flops) and fa_flops[0] < fa_flops[-1]


def test_no_save_writes_nothing(quick_run):
    _, saved = quick_run
    for path, mtime in saved.items():
        assert (path.stat().st_mtime if path.exists() else None) == mtime


def test_only_the_cross_attention_step_runs_the_fusion_block():
    bench = fs.build_bench(QUICK)
    x = fs.make_inputs(bench, 16, 2, QUICK.visual_tokens)
    block = list(bench.cross.parameters())
    fs.autoregressive_step(bench, x)
    assert all(p.grad is None for p in block)
    assert x.visual.grad.abs().sum() > 0  # the visual tokens are in the sequence
    fs._fresh(bench, x)
    sizes = fs.cross_attention_step(bench, x)
    assert all(p.grad is not None for p in block)
    assert x.visual.grad.abs().sum() > 0  # through the block's cross-attention (its gates are open)
    assert sizes == {'tokens': 16, 'visual keys': 2 * QUICK.visual_tokens}


def test_more_images_than_text_tokens_is_refused():
    bench = fs.build_bench(QUICK)
    with pytest.raises(ValueError, match='3 images need at least as many text tokens'):
        fs.make_inputs(bench, 2, 3, QUICK.visual_tokens)


@pytest.mark.slow
def test_overhead_compares_the_runner_with_a_plain_loop_on_tiny_models(synthetic_root):
    from benchmarks import overhead
    from vlkit.testing import tiny_options

    options = [f'{k}={v}' for k, v in tiny_options(synthetic_root, 4).items()]
    result = overhead.main(['--iters', '4', '--warmup', '1', '--no-save', '--cfg-options', *options])
    assert result['precision'] in ('fp32', 'bf16') and result['iters'] == 4
    assert result['vlkit_ms'] > 0 and result['plain_ms'] > 0
    assert result['ratio'] == pytest.approx(result['vlkit_ms'] / result['plain_ms'])
    assert 0 <= result['data_share'] < 1
    assert result['gflop'] > 0 and result['max_iters'] == 4
    rate = result['gflop'] / (result['plain_ms'] / 1e3)
    assert result['peak_share'] == pytest.approx(rate / result['peak'])
    assert result['floor_s'] == pytest.approx(4 * result['gflop'] / result['peak'])


@pytest.mark.slow
def test_gpu_step_runs_its_smoke_path_on_whatever_device_there_is(tmp_path):
    from benchmarks import gpu_step

    out = tmp_path / 'gpu_step.md'
    report = gpu_step.main(['--smoke', '--configs', 'llava15_mlp', '--out', str(out)])
    assert out.read_text() == report
    rows = [line for line in report.splitlines() if line.startswith('| llava15_mlp |')]
    assert [row.split(' | ')[1] for row in rows] == ['eager', 'compiled']
    assert all(float(row.split(' | ')[3]) > 0 for row in rows)  # step ms
    lines = [
        line for line in report.splitlines() if line.startswith(('| no mask', '| key padding', '| per-q'))
    ]
    checks = {line.split(' | ')[0][2:]: float(line.split(' | ')[1].rstrip(' |')) for line in lines}
    assert set(checks) == {'no mask', 'key padding', 'per-query'} and max(checks.values()) < 1e-4


def test_the_attention_benchmark_times_both_backends_and_says_what_auto_takes():
    from benchmarks import attention

    text = attention.main(['--shapes', '1', '--repeats', '1', '--no-save'])
    rows = [line.split(' | ') for line in text.splitlines() if line.startswith('| default LLM')]
    assert [(r[3], r[6]) for r in rows] == [('fp32', 'sdpa'), ('bf16', 'math')]
    for r in rows:
        sdpa_ms, math_ms, auto_over_faster = float(r[4]), float(r[5]), float(r[7].rstrip(' |'))
        auto_ms = sdpa_ms if r[6] == 'sdpa' else math_ms
        assert auto_over_faster == pytest.approx(auto_ms / min(sdpa_ms, math_ms), abs=0.006)


def test_publish_prints_and_appends_only_when_saving(tmp_path, capsys):
    from benchmarks.connectors import HEADER, publish

    results = tmp_path / 'RESULTS.md'
    publish('| a | 1 |', save=False, path=results)
    assert capsys.readouterr().out == '| a | 1 |\n' and not results.exists()
    publish('| a | 1 |', save=True, path=results)
    publish('| b | 2 |', save=True, path=results)
    assert results.read_text() == HEADER + '\n| a | 1 |\n\n| b | 2 |\n'


def _located_hot_token(n: int, seed: int) -> dict:
    """Four visual tokens, one of them hot; the answer says which half it is in (the question is constant)."""
    generator = torch.Generator().manual_seed(seed)
    where = torch.randint(0, 4, (n,), generator=generator)
    tokens = torch.zeros(n, 4, 8)
    tokens[torch.arange(n), where] = 1.0
    return {'tokens': tokens, 'ids': torch.ones(n, 1, dtype=torch.long), 'answers': [
        'left' if w < 2 else 'right' for w in where.tolist()]}  # fmt: skip


@pytest.mark.slow
def test_the_task_probe_finds_what_only_positions_tell():
    from benchmarks.task_probe import probe_accuracy

    train, held_out = _located_hot_token(512, 0), _located_hot_token(200, 1)
    majority = 100 * max(held_out['answers'].count(a) for a in ('left', 'right')) / 200
    accuracy = {view: probe_accuracy(train, held_out, 2, view, passes=20, seed=0) for view in
                ('question only', 'mean token', 'all tokens')}  # fmt: skip
    assert accuracy['all tokens'] == 100.0
    assert accuracy['mean token'] <= majority and accuracy['question only'] <= majority  # all inputs alike


@pytest.mark.slow
def test_the_task_probe_reads_the_order_of_the_question():
    from benchmarks.task_probe import probe_accuracy

    def ordered(n: int, seed: int) -> dict:  # "is the A left of the B ?" against "... the B left of the A ?"
        flipped = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed)).bool()
        ids = torch.where(flipped[:, None], torch.tensor([2, 1]), torch.tensor([1, 2]))
        answers = ['no' if f else 'yes' for f in flipped]
        return {'tokens': torch.zeros(n, 4, 8), 'ids': ids, 'answers': answers}

    assert probe_accuracy(ordered(512, 0), ordered(200, 1), 3, 'question only', passes=20, seed=0) == 100.0


@pytest.mark.slow
def test_the_task_probe_reports_each_task_against_chance(synthetic_root):
    from benchmarks import task_probe
    from vlkit.testing import tiny_options

    options = [f'{k}={v}' for k, v in tiny_options(synthetic_root, 4).items()]
    args = ['--tasks', 'count', 'spatial', '--held-out', '20', '--no-save', '--cfg-options', *options]
    rows = task_probe.main(args)
    assert [(r['task'], r['samples'], r['chance']) for r in rows] == [('count', 5, 25), ('spatial', 5, 50)]
    assert all(0 <= r[view] <= 100 for r in rows for view in task_probe.VIEWS)
    table = task_probe.table(rows).splitlines()
    assert table[2].startswith('| count | 5 | 25.0 |') and table[3].startswith('| spatial | 5 | 50.0 |')
