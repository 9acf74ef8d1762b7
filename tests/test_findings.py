"""tools/findings.py: the verdict rule on hand-worked cases, recipes that name the architectures their
comparisons produce, and the document, table and error-bar plot made from the kept records."""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests.helpers import ROOT
from vlkit.analysis.report import RunResult, write_report

sys.path.insert(0, str(ROOT / 'tools'))
import compare  # noqa: E402
import findings  # noqa: E402


def _spread(mean: float, std: float | None, n: int) -> dict:
    return {'mean': mean, 'std': std, 'n': n}


@pytest.mark.parametrize(
    ('a', 'b', 'expect', 'word', 'effect', 'half'),
    [
        # 2 * sqrt(4/3 + 4/3) = 3.27: +10 lies above 0
        (_spread(62, 2, 3), _spread(52, 2, 3), 'higher', 'reproduced', 10.0, 3.266),
        (_spread(52, 2, 3), _spread(62, 2, 3), 'higher', 'not reproduced', -10.0, 3.266),  # reversed
        # 2 * sqrt(32/3) = 6.53: [-4.5, 8.5] holds 0 and leaves the margin
        (_spread(52, 4, 3), _spread(50, 4, 3), 'higher', 'inconclusive', 2.0, 6.532),
        # 2 * sqrt(0.25/3 * 2) = 0.82: [-0.3, 1.3] inside ±3, no effect
        (_spread(50.5, 0.5, 3), _spread(50, 0.5, 3), 'higher', 'not reproduced', 0.5, 0.816),
        # 2 * sqrt(2/3) = 1.63: [-1.1, 2.1] inside ±3
        (_spread(50.5, 1, 3), _spread(50, 1, 3), 'equal', 'reproduced', 0.5, 1.633),
        (_spread(62, 2, 3), _spread(52, 2, 3), 'equal', 'not reproduced', 10.0, 3.266),
        (_spread(52, 4, 3), _spread(50, 4, 3), 'equal', 'inconclusive', 2.0, 6.532),
    ],
)
def test_the_verdict_rule_on_hand_worked_cases(a, b, expect, word, effect, half):
    v = findings.verdict(a, b, expect)
    assert (v.word, v.effect) == (word, pytest.approx(effect)) and v.half_width == pytest.approx(
        half, abs=1e-3
    )


def test_a_single_seed_or_a_missing_run_decides_nothing():
    assert findings.verdict(_spread(70, None, 1), _spread(50, None, 1), 'higher').word.startswith(
        'inconclusive'
    )
    assert findings.verdict(None, _spread(50, 1, 3), 'higher').word == 'not run'
    with pytest.raises(ValueError, match="'bigger'"):
        findings.verdict(_spread(50, 1, 3), _spread(50, 1, 3), 'bigger')
    words = [
        findings.Verdict(w) for w in ('reproduced', 'not reproduced', 'inconclusive (fewer than 2 seeds)')
    ]
    assert findings.overall_verdict(words[:1] * 2) == 'reproduced'
    assert findings.overall_verdict(words) == 'not reproduced'
    assert findings.overall_verdict([words[0], words[2]]) == 'inconclusive'
    missing = findings.Verdict('not run')
    assert findings.overall_verdict([missing] * 2) == 'not run yet'
    assert findings.overall_verdict([words[0], missing]) == 'incomplete (not every run is there)'


def test_every_contrast_names_an_architecture_its_part_produces(monkeypatch):
    monkeypatch.chdir(ROOT)  # the recipes' config paths are relative to the checkout
    for finding in findings.FINDINGS:
        parts = {p.name: p for p in finding.parts}
        for contrast in finding.contrasts:
            for arch in (contrast.a, contrast.b):
                part, name = arch.split('/', 1)
                produced = [v.name for v in compare.variants(compare.parse_args(parts[part].args))]
                assert name in produced, f'finding ({finding.key}): {arch} is not one of {produced}'


def _part_runs(values: dict[str, list[float]]) -> list[RunResult]:
    """Three seeds per architecture, every task scoring the overall value given."""
    return [
        RunResult(
            name, seed=seed, seconds={'training': 600.0, 'evaluation': 40.0},
            metrics={'val 0-shot': {'exact_match/overall': v, 'exact_match/spatial': v + 1}},
            references={'question only': {'overall': 25.0}},
        )
        for name, overalls in values.items() for seed, v in enumerate(overalls)
    ]  # fmt: skip


@pytest.fixture
def kept_a(tmp_path, monkeypatch):
    """Finding (a)'s two comparisons written as tools/compare.py writes them, then collected."""
    for part, shift in (('tokens9', 0.0), ('tokens16', 10.0)):
        runs = _part_runs(
            {n: [50 + shift, 52 + shift, 54 + shift] for n in ('avgpool', 'perceiver', 'c_abstractor')}
        )
        meta = {'command': f'tools/compare.py {part}', 'date': '2026-12-01', 'training': '1500 iterations'}
        write_report(runs, str(tmp_path / 'runs' / part), meta)
    monkeypatch.setattr(findings, 'KEPT', str(tmp_path / 'kept'))
    monkeypatch.setattr(findings, 'DOC', str(tmp_path / 'findings.md'))
    monkeypatch.setattr(findings, 'IMAGES', str(tmp_path))
    return findings.collect(findings.BY_KEY['a'], str(tmp_path / 'runs'))


def test_collect_keeps_each_architectures_scores_over_seeds_and_the_runs_time(kept_a, tmp_path):
    saved = json.loads((tmp_path / 'kept' / 'a.json').read_text())
    assert saved == kept_a and set(saved['parts']) == {'tokens9', 'tokens16'}
    part = saved['parts']['tokens16']
    assert part['runs'] == 9 and part['run_seconds'] == 9 * 640 and part['question_only'] == {'overall': 25.0}
    assert part['architectures']['perceiver']['scores'][findings.score_key('overall', 0)] == _spread(62, 2, 3)


def test_the_document_gives_each_contrast_its_figures_and_verdict(kept_a, tmp_path):
    assert findings.render() == 0 and findings.render(check=True) == 0
    doc = (tmp_path / 'findings.md').read_text()
    assert (
        '| 16 vs 9 tokens, C-Abstractor | overall, 0-shot | `tokens16/c_abstractor` 62.0 ± 2.0 (n=3) | '
        '`tokens9/c_abstractor` 52.0 ± 2.0 (n=3) | - | +10.0 ± 3.3 | reproduced |'
    ) in doc
    # the three connectors score alike at 16 tokens: a difference of 0 ± 3.3 leaves the ±3 margin
    assert (
        '| C-Abstractor vs perceiver, 16 tokens | overall, 0-shot |' in doc
        and '| +0.0 ± 3.3 | inconclusive |' in doc
    )
    assert '**Verdict: inconclusive** (reproduced: +10.0 ± 3.3 points;' in doc
    assert 'Made by `tools/compare.py tokens9` (2026-12-01); `tools/compare.py tokens16` (2026-12-01).' in doc
    assert '18 runs, 3.2 h of training and evaluation' in doc and 'Ran so far: 2 of 10 comparisons' in doc
    assert (
        '`python tools/findings.py run b`' in doc and 'not run' in doc
    )  # the others: their recipe, no figure
    assert (tmp_path / 'finding_a.png').stat().st_size > 0
    (tmp_path / 'findings.md').write_text(doc.replace('+10.0', '+12.0'))
    assert findings.render(check=True) == 1


def test_the_plot_draws_each_mean_with_its_seeds_spread(kept_a):
    fig = findings.figure(findings.BY_KEY['a'], kept_a)
    bars = [c for c in fig.axes[0].containers if type(c).__name__ == 'BarContainer']
    assert [round(b.patches[0].get_height(), 6) for b in bars[4:6]] == [62.0, 52.0]  # contrast 3: a, b
    (low, high) = bars[4].errorbar.lines[2][0].get_segments()[0][:, 1]  # tokens16/c_abstractor: 62 ± 2
    assert (low, high) == pytest.approx((60.0, 64.0))


def test_the_committed_document_is_what_its_records_render():
    assert findings.render(check=True) == 0, 'docs/findings.md differs: run python tools/findings.py render'


def test_every_architecture_of_every_recipe_passes_the_config_check_and_builds(
    synthetic_root, tmp_path, monkeypatch
):
    """A recipe that fails only after hours of other runs is caught here, at tiny size."""
    from vlkit.config import load_config
    from vlkit.config_check import check_config
    from vlkit.registry import MODELS
    from vlkit.testing import tiny_options

    monkeypatch.chdir(ROOT)
    parts = {p.name: p for f in findings.FINDINGS for p in f.parts}
    for part in parts.values():
        for variant in compare.variants(compare.parse_args(part.args)):
            path = tmp_path / f'{part.name}-{variant.name}.py'
            variant.cfg.dump(str(path))
            cfg = check_config(load_config(str(path), tiny_options(synthetic_root, 2)))
            model = MODELS.build(cfg.model)
            trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
            assert trained > 0, f'{part.name}/{variant.name} trains nothing'


def _acceptance_runs(position_gain: float) -> list[RunResult]:
    """mlp and linear (64 tokens) and c_abstractor (16), three seeds each; every task's prior is 25 but
    spatial's, 50. mlp scores prior + 30 (position: prior + ``position_gain``), linear prior + 5, the
    C-Abstractor prior + 10; the seeds add -1, 0, +1."""
    from vlkit.data.synthetic import TASKS

    prior = {t: 50.0 if t == 'spatial' else 25.0 for t in TASKS} | {'overall': 29.2}
    gains = {'mlp': 30.0, 'linear': 5.0, 'c_abstractor': 10.0}
    runs = []
    for name, gain in gains.items():
        for seed, noise in enumerate((-1.0, 0.0, 1.0)):
            task_gain = {t: position_gain if (name, t) == ('mlp', 'position') else gain for t in TASKS}
            scores = {f'exact_match/{t}': prior[t] + task_gain[t] + noise for t in TASKS}
            scores['exact_match/overall'] = sum(scores.values()) / len(TASKS)
            tokens = 16 if name == 'c_abstractor' else 64
            profile = {'visual_tokens_per_image': tokens} if seed == 0 else {}
            references = {'question only': prior}
            runs.append(RunResult(name, seed=seed, metrics={'val 0-shot': scores}, profile=profile,
                                  seconds={'training': 60.0}, references=references))  # fmt: skip
    return runs


def test_the_acceptance_asks_every_task_of_one_connector_and_compares_equal_token_counts(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(findings, 'KEPT', str(tmp_path / 'kept'))
    write_report(_acceptance_runs(position_gain=30.0), str(tmp_path / 'runs' / 'acceptance'), {'command': 'c',
                 'date': 'd', 'training': '1500 iterations'})  # fmt: skip
    record = findings.collect(findings.ACCEPTANCE, str(tmp_path / 'runs'))
    lines = findings.acceptance_section(record)
    assert lines[4].startswith('**Accepted**') and 'Not run yet: perceiver, qformer.' in lines
    assert (
        '| task | question only | mlp (64 tokens) | c_abstractor (16 tokens) | linear (64 tokens) |'
        in lines[6]
    )
    assert '| spatial | 50.0 | 80.0 ± 1.0 (n=3) | 60.0 ± 1.0 (n=3) | 55.0 ± 1.0 (n=3) | +30.0 |' in lines
    # mlp and linear both pass 64 tokens on: 80 - 55 = 25 points apart, against 2 x 1.0
    assert (
        '* spatial, 64 tokens (mlp, linear): best - worst 25.0 points, twice the seed std 2.0: they differ.'
        in lines
    )

    write_report(_acceptance_runs(position_gain=12.0), str(tmp_path / 'runs' / 'acceptance'), {'command': 'c',
                 'date': 'd', 'training': '1500 iterations'})  # fmt: skip
    lines = findings.acceptance_section(findings.collect(findings.ACCEPTANCE, str(tmp_path / 'runs')))
    assert lines[4] == '**Not accepted**: no connector is 20 points above the prior on position.'
    assert '| position | 25.0 | 37.0 ± 1.0 (n=3) | 35.0 ± 1.0 (n=3) | 30.0 ± 1.0 (n=3) | +12.0 |' in lines


def test_run_runs_each_part_with_its_seeds_then_collects(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(compare, 'main', lambda argv: calls.append(argv) or [RunResult('x', status='failed')])
    monkeypatch.setattr(findings, 'collect', lambda finding, out: calls.append(('collect', finding.key, out)))
    assert findings.main(['run', 'b', '--seeds', '2', '--out', str(tmp_path)]) == 1  # a run failed
    assert calls[0] == [
        *'configs/blip3_perceiver_frozen_llm.py --connectors perceiver --fusions autoregressive'.split(),
        *'cross_attention --tokens 6 --seeds 2 --out'.split(), str(tmp_path / 'frozen_fusions'),
    ]  # fmt: skip
    assert [c[-1] for c in calls[1:3]] == [str(tmp_path / 'lora_fusions'), str(tmp_path / 'frozen_mlp')]
    assert calls[3] == ('collect', 'b', str(tmp_path))


def _latents_record(six: float, eleven: float, std: float = 1.0) -> dict:
    """Finding (c)'s record with three seeds a side."""

    def part(mean):
        scores = {findings.score_key('overall', 0): {'mean': mean, 'std': std, 'n': 3}}
        how = {'command': 'tools/compare.py', 'commit': 'abc', 'date': '2026-12-01', 'machine': 'cpu'}
        return {**how, 'benchmark_format': 3, 'training': '1500 iterations', 'runs': 3, 'run_seconds': 1800,
                'architectures': {'perceiver': {'scores': scores}}}  # fmt: skip

    return {'parts': {'latents6': part(six), 'latents11': part(eleven)}}


def test_a_finding_that_does_not_reproduce_says_what_might_explain_it():
    finding = findings.BY_KEY['c']
    assert all(f.if_not_reproduced for f in findings.FINDINGS)  # every finding has its explanation ready
    reproduced = '\n'.join(findings.section(finding, _latents_record(60.0, 60.5)))
    assert '**Verdict: reproduced**' in reproduced and 'What might explain it' not in reproduced
    missed = '\n'.join(findings.section(finding, _latents_record(50.0, 60.0)))
    assert '**Verdict: not reproduced** (not reproduced: -10.0 ± 1.6 points).' in missed
    assert (
        f'What might explain it (written with the recipe, before the runs): {finding.if_not_reproduced}'
        in missed
    )
    assert 'What might explain it' not in '\n'.join(findings.section(finding, None))  # not run yet
    undecided = '\n'.join(findings.section(finding, _latents_record(60.0, 60.0, std=3.0)))
    assert '**Verdict: inconclusive** (inconclusive: +0.0 ± 4.9 points).' in undecided
    assert 'What might explain it' not in undecided  # the spread explains it: 3 · (4.90 / 3)² = 8 seeds
    assert '"6 vs 11 latents" is inconclusive because the seeds spread more than the effect' in undecided
    assert 'about 8 seeds a side would decide it.' in undecided


@pytest.mark.parametrize(
    'a, b, expect, seeds',
    [
        (61.5, 61.0, 'equal', 12),  # ±4.90 must shrink to 3 - 0.5: 3 · (4.90 / 2.5)² = 11.5
        (62.5, 60.0, 'higher', 21),  # ±6.53 must shrink below 2.5: 3 · (6.53 / 2.5)² = 20.5
        (60.0, 60.0, 'higher', None),  # no effect: no number of seeds makes it higher
    ],
)
def test_the_seeds_an_inconclusive_contrast_would_need(a, b, expect, seeds):
    std = 3.0 if expect == 'equal' else 4.0
    assert findings.verdict(_spread(a, std, 3), _spread(b, std, 3), expect).word == 'inconclusive'
    assert findings.seeds_to_decide(_spread(a, std, 3), _spread(b, std, 3), expect) == seeds


def test_the_headline_plot_draws_each_contrasts_interval_in_its_verdicts_colour():
    fig = findings.headline_figure({'c': _latents_record(50.0, 60.0)})
    ax = fig.axes[0]
    (line,) = [ln for ln in ax.lines if ln.get_marker() == 'o' and len(ln.get_xdata()) == 1]
    assert line.get_xdata()[0] == pytest.approx(-10.0) and line.get_color() == 'tab:red'  # not reproduced
    (low, high) = ax.collections[-1].get_segments()[0][:, 0]  # its 95% interval: -10 ± 2·sqrt(2/3)
    assert (low, high) == pytest.approx((-10 - 2 * math.sqrt(2 / 3), -10 + 2 * math.sqrt(2 / 3)))
    rows = sum(len(f.contrasts) for f in findings.FINDINGS)
    assert [t.get_text() for t in ax.texts] == ['not run'] * (rows - 1)
    assert len(ax.get_yticklabels()) == rows and '(c) 6 vs 11 latents [=]' in [
        t.get_text() for t in ax.get_yticklabels()
    ]
