"""The papers' findings, re-tested on the synthetic benchmark: each one's runs, table, plot and verdict.

    python tools/findings.py list                              # the findings and their compare commands
    python tools/findings.py run KEY [--seeds 3] [--out work_dirs/findings]
    python tools/findings.py collect KEY [--out work_dirs/findings]
    python tools/findings.py render [--check]

Each finding (:data:`FINDINGS`, keys ``a`` to ``e``) is one or more ``tools/compare.py`` commands (its
*parts*) and the contrasts the paper predicts between two of their architectures; the key ``acceptance``
(:data:`ACCEPTANCE`) is the benchmark's own acceptance run, which comes first. ``run`` runs the parts it
lacks (each into ``OUT/PART``: a part shared by two findings runs once, and ``tools/compare.py`` reuses every
finished run), then collects. ``collect`` keeps each part's figures (every architecture's scores over its
seeds, the command, commit, machine and the runs' own seconds) in ``docs/results/findings/KEY.json``;
run it from the checkout whose commit ran the parts. ``render`` writes ``docs/findings.md``, one plot
per finding (``docs/images/finding_KEY.png``) and the headline plot of every contrast
(``docs/images/findings.png``) from those files alone, with the verdict each contrast gets under
:func:`verdict`'s rule; ``--check`` changes nothing and exits 1 when the document differs.

The recipes, the contrasts, the verdict rule and its margin were written down before any finding ran, and
the benchmark was designed and accepted on its own criteria (docs/data.md), not on these results; so were
the possible explanations each finding gives should it not reproduce (``Finding.if_not_reproduced``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import os.path as osp
import sys
from dataclasses import dataclass

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from a checkout without installing

KEPT = osp.join(ROOT, 'docs', 'results', 'findings')
DOC = osp.join(ROOT, 'docs', 'findings.md')
IMAGES = osp.join(ROOT, 'docs', 'images')
BASE = 'configs/blip3_perceiver.py'
# A finding that says two settings are "as good as" each other is reproduced when the 95% interval of the
# difference lies within this many points; fixed before any finding ran.
EQUAL_MARGIN = 3.0


@dataclass(frozen=True)
class Part:
    """One ``tools/compare.py`` command of a finding (its arguments, without ``--seeds`` and ``--out``), run
    into ``OUT/name``."""

    name: str
    arguments: str

    @property
    def args(self) -> list[str]:
        return self.arguments.split()

    def command(self, out: str, seeds: int) -> list[str]:
        return [*self.args, '--seeds', str(seeds), '--out', osp.join(out, self.name)]


@dataclass(frozen=True)
class Contrast:
    """What the paper predicts of two architectures (``PART/NAME``) on one score: ``a`` above ``b``
    (``expect='higher'``) or the two within :data:`EQUAL_MARGIN` (``expect='equal'``)."""

    label: str
    a: str
    b: str
    metric: str = 'overall'
    expect: str = 'higher'
    shots: int = 0
    paper: str = ''  # the paper's figures for a and b, where it states them


@dataclass(frozen=True)
class Finding:
    key: str
    title: str
    source: str
    claim: str
    scaling: str
    parts: tuple[Part, ...]
    contrasts: tuple[Contrast, ...]
    # What might explain it if it does not reproduce, written down with the recipe, before any run.
    if_not_reproduced: str = ''


FROZEN, LORA = 'configs/blip3_perceiver_frozen_llm.py', 'configs/blip3_perceiver_lora_llm.py'
RESAMPLERS = '--connectors avgpool perceiver c_abstractor'
TOKENS_9 = Part('tokens9', f'{BASE} {RESAMPLERS} --tokens 9')
TOKENS_16 = Part('tokens16', f'{BASE} {RESAMPLERS} --tokens 16')
FROZEN_FUSIONS = Part(
    'frozen_fusions', f'{FROZEN} --connectors perceiver --fusions autoregressive cross_attention --tokens 6'
)
LORA_FUSIONS = Part(
    'lora_fusions', f'{LORA} --connectors perceiver --fusions autoregressive cross_attention_lora --tokens 6'
)
NO_POOLING = Part('frozen_mlp', f'{FROZEN} --connectors mlp')
LATENTS_6 = Part('latents6', f'{BASE} --connectors perceiver --tokens 6')
LATENTS_11 = Part('latents11', f'{BASE} --connectors perceiver --tokens 11')
PAIRS = Part('pairs', f'{BASE} --shots 0 2')
INTERLEAVED = Part('interleaved', 'configs/blip3_perceiver_interleaved_mix.py --shots 0 2')

_FROZEN_AR, _FROZEN_XA = 'frozen_fusions/perceiver+autoregressive', 'frozen_fusions/perceiver+cross_attention'
_LORA_AR, _LORA_XA = 'lora_fusions/perceiver+autoregressive', 'lora_fusions/perceiver+cross_attention_lora'

FINDINGS = (
    Finding(
        'a',
        'Visual tokens matter more than the connector type',
        'MM1 (McKinzie et al., 2024), section 3.2',
        'the number of visual tokens and the image resolution matter most; the connector type matters '
        'little.',
        'MM1 pools 576 tokens to 64 or 144 (9x and 4x); here 64 patch tokens go to 9 or 16 (7.1x and 4x; '
        'square counts, which average pooling and the C-Abstractor need). MM1 compares average pooling, '
        'attention pooling and the C-Abstractor: here `avgpool`, `perceiver` and `c_abstractor`. The '
        'resolution is not varied: every object and word of the benchmark is legible at its 64 px, so a '
        'higher resolution adds nothing to read.',
        (TOKENS_9, TOKENS_16),
        (
            Contrast('16 vs 9 tokens, average pooling', 'tokens16/avgpool', 'tokens9/avgpool'),
            Contrast('16 vs 9 tokens, perceiver', 'tokens16/perceiver', 'tokens9/perceiver'),
            Contrast('16 vs 9 tokens, C-Abstractor', 'tokens16/c_abstractor', 'tokens9/c_abstractor'),
            Contrast('C-Abstractor vs perceiver, 16 tokens',
                     'tokens16/c_abstractor', 'tokens16/perceiver', expect='equal'),
            Contrast('C-Abstractor vs average pooling, 16 tokens',
                     'tokens16/c_abstractor', 'tokens16/avgpool', expect='equal'),
        ),
        'Nine tokens may already hold all that the benchmark asks of its few objects at 64 px (no token '
        'effect), or the 1,500-iteration budget may separate the connectors by how fast they learn rather '
        'than by what they can hold (a type effect); MM1 trained each variant on hundreds of millions of '
        'samples.',
    ),
    Finding(
        'b',
        'Fusion and pooling with frozen and with trained backbones',
        'Idefics2 (Laurencon et al., 2024), Table 3',
        'with frozen backbones, cross-attention beats fully autoregressive fusion; once the backbones train '
        '(LoRA), fully autoregressive wins; pooling with a perceiver beats no pooling with frozen backbones.',
        'The language model is the default tiny Llama after its text-only pretraining stage '
        '(`llm_pretraining`), frozen or with LoRA (`configs/blip3_perceiver_frozen_llm.py`, '
        '`configs/blip3_perceiver_lora_llm.py`); the encoder is frozen in both, as in the default. '
        'Idefics2 pools 729 tokens to 64 latents (11x): here 64 tokens to 6. No pooling is the MLP '
        'projector on all 64 tokens.',
        (FROZEN_FUSIONS, LORA_FUSIONS, NO_POOLING),
        (
            Contrast('frozen: cross-attention vs autoregressive', _FROZEN_XA, _FROZEN_AR,
                     paper='66.7 vs 60.3'),
            Contrast('LoRA: autoregressive vs cross-attention', _LORA_AR, _LORA_XA, paper='69.5 vs 67.3'),
            Contrast('frozen: perceiver vs no pooling', _FROZEN_AR, 'frozen_mlp/mlp', paper='60.3 vs 51.8'),
        ),
        "The tiny language model, pretrained for minutes on the benchmark's own text, is far from a frozen "
        '7B model, so freezing it may cost more here than in Idefics2; the cross-attention gates start '
        'closed (tanh(0)) and may not open far in 1,500 iterations; LoRA on a four-layer model is close to '
        'training it fully.',
    ),
    Finding(
        'c',
        'A perceiver with half the latents',
        'Idefics2 (Laurencon et al., 2024), Table 4',
        'a perceiver with 64 latents is as good as one with 128.',
        'Idefics2 pools 729 tokens to 64 or 128 latents (11x and 5.7x); here 64 tokens to 6 or 11 latents, '
        "the same compression ratios (128 latents would exceed the benchmark's 64 tokens).",
        (LATENTS_6, LATENTS_11),
        (Contrast('6 vs 11 latents', 'latents6/perceiver', 'latents11/perceiver', expect='equal',
                  paper='71.7 vs 71.2'),),
        'Six latents may be too few for the objects and word of one scene, where 64 latents of 729 tokens '
        'are not; Idefics2 also trained far longer, which lets fewer latents catch up.',
    ),
    Finding(
        'd',
        'Locality at an equal number of tokens',
        'Honeybee (Cha et al., 2024), section 3',
        'at an equal number of visual tokens, a locality-preserving abstractor (the C-Abstractor) beats a '
        'resampler on spatial understanding.',
        "The runs of finding (a) at 16 tokens, on the benchmark's two tasks whose answer depends on where "
        'things are, `spatial` and `position`.',
        (TOKENS_16,),
        (
            Contrast('spatial: C-Abstractor vs perceiver', 'tokens16/c_abstractor', 'tokens16/perceiver',
                     metric='spatial'),
            Contrast('position: C-Abstractor vs perceiver', 'tokens16/c_abstractor', 'tokens16/perceiver',
                     metric='position'),
        ),
        'At 16 tokens of an 8 x 8 grid the C-Abstractor pools 2 x 2 patches, and the acceptance run left it '
        "at the prior on both locality tasks at this budget; a perceiver's latents can attend to single "
        'patches, so at this scale a resampler may keep where things are as well as a convolution does. '
        'Honeybee measured its gain with a pretrained CLIP encoder and a 7B language model.',
    ),
    Finding(
        'e',
        'Interleaved data and few-shot ability',
        'MM1 (McKinzie et al., 2024), section 3.3',
        'interleaved image-text data is what gives few-shot ability; caption pairs lift zero-shot.',
        'Pairs: the default training data (one image, one question). Interleaved: half the samples are the '
        "benchmark's interleaved documents (0-2 solved examples, then a query; "
        '`configs/blip3_perceiver_interleaved_mix.py`). Both are evaluated on the same questions, with 0 and '
        '2 solved examples from the training pairs before each.',
        (PAIRS, INTERLEAVED),
        (
            Contrast('2-shot: interleaved vs pairs', 'interleaved/blip3_perceiver_interleaved_mix',
                     'pairs/blip3_perceiver', shots=2),
            Contrast('0-shot: pairs vs interleaved', 'pairs/blip3_perceiver',
                     'interleaved/blip3_perceiver_interleaved_mix'),
        ),
        'A tiny model trained for 1,500 iterations may not learn to use solved examples in its context at '
        "all (MM1's few-shot gains come after billions of tokens); and with half of the mixture "
        'interleaved, the mixed model sees half as many single-image questions, which may cost it zero-shot.',
    ),
)  # fmt: skip
BY_KEY = {f.key: f for f in FINDINGS}
# The benchmark's own acceptance, before any finding: every task learned by at least one built-in connector,
# ACCEPTANCE_MARGIN points above its question-only prior (the mean over the seeds).
ACCEPTANCE_CONNECTORS = ('mlp', 'c_abstractor', 'linear', 'perceiver', 'qformer')
ACCEPTANCE = Finding(
    'acceptance', 'Benchmark acceptance', '', '', '',
    (Part('acceptance', f'{BASE} --connectors {" ".join(ACCEPTANCE_CONNECTORS)}'),), (),
)  # fmt: skip
ACCEPTANCE_MARGIN = 20.0
RECIPES = {**BY_KEY, ACCEPTANCE.key: ACCEPTANCE}


@dataclass(frozen=True)
class Verdict:
    """A contrast's outcome: ``effect`` = mean(a) - mean(b) in points, ``half_width`` = twice its standard
    error (the 95% interval is ``effect ± half_width``), and the word it earns under :func:`verdict`."""

    word: str
    effect: float | None = None
    half_width: float | None = None

    @property
    def outcome(self) -> str:
        """The word without its reason: 'inconclusive (fewer than 2 seeds)' is 'inconclusive'."""
        return self.word.split(' (')[0]

    def __str__(self) -> str:
        if self.effect is None:
            return self.word
        return f'{self.word}: {self.effect:+.1f} ± {self.half_width:.1f} points'


def verdict(a: dict | None, b: dict | None, expect: str) -> Verdict:
    """The rule, fixed before any finding ran. ``a`` and ``b`` are scores over seeds (``mean``, ``std``,
    ``n``). The difference's 95% interval is ``effect ± 2 * sqrt(std_a² / n_a + std_b² / n_b)``.

    * ``higher`` (the paper says a > b): *reproduced* when the interval lies above 0; *not reproduced* when
      it lies below 0, or within ``± EQUAL_MARGIN`` (no effect); else *inconclusive*.
    * ``equal`` (the paper says a ≈ b): *reproduced* when the interval lies within ``± EQUAL_MARGIN``; *not
      reproduced* when it excludes 0 (a difference); else *inconclusive*.

    A side without runs: *not run*; fewer than two seeds on either side: *inconclusive* (no spread is known).
    """
    if not a or not b:
        return Verdict('not run')
    if a['n'] < 2 or b['n'] < 2:
        return Verdict('inconclusive (fewer than 2 seeds)')
    effect = a['mean'] - b['mean']
    half = 2 * math.sqrt(a['std'] ** 2 / a['n'] + b['std'] ** 2 / b['n'])
    low, high = effect - half, effect + half
    within_margin = -EQUAL_MARGIN <= low and high <= EQUAL_MARGIN
    if expect == 'higher':
        word = 'reproduced' if low > 0 else 'not reproduced' if high < 0 or within_margin else 'inconclusive'
    elif expect == 'equal':
        word = 'reproduced' if within_margin else 'not reproduced' if low > 0 or high < 0 else 'inconclusive'
    else:
        raise ValueError(f"Contrast.expect must be 'higher' or 'equal', got {expect!r}")
    return Verdict(word, effect, half)


def seeds_to_decide(a: dict, b: dict, expect: str) -> int | None:
    """For an inconclusive contrast: about how many seeds a side would decide it if the means and the seeds'
    spreads stayed as they are (the interval narrows as 1/sqrt(n)); ``None`` when no number of seeds would.

    The interval must shrink to within ``EQUAL_MARGIN - |effect|`` for an ``equal`` contrast whose effect is
    inside the margin, and below ``|effect|`` (so that it excludes 0) otherwise."""
    v = verdict(a, b, expect)
    if v.effect is None:
        return None
    inside = expect == 'equal' and abs(v.effect) < EQUAL_MARGIN
    room = EQUAL_MARGIN - abs(v.effect) if inside else abs(v.effect)
    if room <= 0:
        return None
    return math.ceil(round(min(a['n'], b['n']) * (v.half_width / room) ** 2, 6))  # 8.0000000001 is 8


def overall_verdict(verdicts: list[Verdict]) -> str:
    """A finding's one word: reproduced when every contrast is, not reproduced when any is not, else
    inconclusive; *not run yet* or *incomplete* while runs are missing."""
    words = [v.outcome for v in verdicts]
    if 'not run' in words:
        return 'not run yet' if set(words) == {'not run'} else 'incomplete (not every run is there)'
    if all(w == 'reproduced' for w in words):
        return 'reproduced'
    return 'not reproduced' if 'not reproduced' in words else 'inconclusive'


def score_key(metric: str, shots: int) -> str:
    """The name of a score in a comparison's ``results.json`` (``val 0-shot: exact_match/spatial``)."""
    return f'val {shots}-shot: exact_match/{metric}'


def part_score(part: dict, name: str, metric: str, shots: int = 0) -> dict | None:
    """One architecture's score over seeds in a kept part, or ``None`` when it has not run."""
    kept = part.get('architectures', {}).get(name)
    return (kept or {}).get('scores', {}).get(score_key(metric, shots))


def score(record: dict, arch: str, metric: str, shots: int) -> dict | None:
    """The score over seeds of ``PART/NAME`` in a kept finding record, or ``None`` when it has not run."""
    part, name = arch.split('/', 1)
    return part_score(record['parts'].get(part, {}), name, metric, shots)


def scores(record: dict, contrast: Contrast) -> tuple[dict | None, dict | None]:
    """The contrast's two scores over seeds, ``a`` then ``b``."""
    return tuple(score(record, arch, contrast.metric, contrast.shots) for arch in (contrast.a, contrast.b))


def contrast_verdict(record: dict, contrast: Contrast) -> Verdict:
    return verdict(*scores(record, contrast), contrast.expect)


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def kept_part(results: dict) -> dict:
    """What a finding keeps of one comparison's ``results.json``: how it ran, and each architecture's seeds,
    status and scores over the seeds."""
    from vlkit.data.synthetic import FORMAT_VERSION  # the checkout that ran the parts: same format

    meta, env = results['meta'], results['environment']
    seconds = [sum(r['seconds'].get(k) or 0.0 for k in ('training', 'evaluation')) for r in results['runs']]
    question_only = next((r['references']['question only'] for r in results['runs'] if r['references']), {})
    return {
        'command': meta['command'],
        'commit': env.get('vlkit commit'),
        'date': meta['date'],
        'machine': f'{env["cpu"]}, {env["cores"]} cores, torch {env["torch version"]}',
        'benchmark_format': FORMAT_VERSION,
        'training': meta['training'],
        'runs': len(results['runs']),
        'run_seconds': round(sum(seconds)),
        'question_only': question_only,
        'visual_tokens': {
            r['name']: r['profile']['visual_tokens_per_image'] for r in results['runs'] if r['profile']
        },
        'architectures': results['architectures'],
    }


def collect(finding: Finding, out: str) -> dict:
    """Writes ``docs/results/findings/KEY.json`` from the finding's parts under ``out``; a part not run yet
    is left out (and the verdicts that need it say so)."""
    parts = {}
    for part in finding.parts:
        path = osp.join(out, part.name, 'results.json')
        if osp.isfile(path):
            parts[part.name] = kept_part(_load(path))
        else:
            print(f'{part.name}: no {path} yet (python tools/findings.py run {finding.key})')
    record = {'finding': finding.key, 'parts': parts}
    os.makedirs(KEPT, exist_ok=True)
    path = osp.join(KEPT, f'{finding.key}.json')
    with open(path, 'w') as f:
        json.dump(record, f, indent=1)
        f.write('\n')
    print(f'wrote {osp.relpath(path, ROOT)}')
    return record


def run(finding: Finding, out: str, seeds: int) -> int:
    """Runs the finding's comparisons (each reuses its finished runs), then collects; 1 if a run failed."""
    import compare  # tools/compare.py, beside this file

    failed = 0
    for i, part in enumerate(finding.parts, 1):
        argv = part.command(out, seeds)
        print(f'finding ({finding.key}), part {i}/{len(finding.parts)}: tools/compare.py {" ".join(argv)}')
        failed += any(r.failed for r in compare.main(argv))
    collect(finding, out)
    return 1 if failed else 0


def _cell(value: dict | None) -> str:
    if not value:
        return 'not run'
    spread = f' ± {value["std"]:.1f}' if value.get('std') is not None else ''
    return f'{value["mean"]:.1f}{spread} (n={value["n"]})'


def figure(finding: Finding, record: dict):
    """Each contrast's two means as bars, with the seeds' standard deviation as error bars."""
    from vlkit.analysis.report import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.9 * len(finding.contrasts), 3.6))
    for i, c in enumerate(finding.contrasts):
        for j, (arch, colour) in enumerate(((c.a, 'tab:blue'), (c.b, 'tab:grey'))):
            value = score(record, arch, c.metric, c.shots) or {'mean': 0.0, 'std': None}  # not run: no bar
            ax.bar(3 * i + j, value['mean'], yerr=value['std'] or 0.0, color=colour, capsize=4, width=0.9)
    ax.set_xticks([3 * i + 0.5 for i in range(len(finding.contrasts))])
    ax.set_xticklabels([c.label.replace(': ', ':\n').replace(' vs ', '\nvs ') for c in finding.contrasts],
                       fontsize=7)  # fmt: skip
    ax.set_ylabel('accuracy % (mean ± std over seeds)')
    sides = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ('tab:blue', 'tab:grey')]
    ax.legend(sides, ['a (named first)', 'b'], fontsize=7, loc='lower right')
    ax.set_title(f'({finding.key}) {finding.title}', fontsize=9)
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {'reproduced': 'tab:green', 'not reproduced': 'tab:red', 'inconclusive': 'tab:orange'}


def headline_figure(records: dict[str, dict]):
    """Every contrast of every finding in one plot: a - b with its 95% interval, against 0 and the
    ±EQUAL_MARGIN band, coloured by its verdict; a contrast whose runs are missing is named "not run"."""
    from vlkit.analysis.report import _pyplot

    plt = _pyplot()
    rows = [(f, c) for f in FINDINGS for c in f.contrasts]
    fig, ax = plt.subplots(figsize=(8.0, 0.9 + 0.32 * len(rows)))
    ax.axvspan(-EQUAL_MARGIN, EQUAL_MARGIN, color='0.92', zorder=0)
    ax.axvline(0.0, color='0.5', lw=0.8)
    for y, (finding, c) in enumerate(rows):
        v = contrast_verdict(records.get(finding.key) or {'parts': {}}, c)
        if v.effect is None:
            ax.text(0.0, y, v.word, ha='center', va='center', fontsize=7, color='0.4')
            continue
        colour = VERDICT_COLOURS[v.outcome]
        ax.errorbar(v.effect, y, xerr=v.half_width, fmt='o', color=colour, capsize=3, ms=4)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f'({f.key}) {c.label} [{"=" if c.expect == "equal" else ">"}]' for f, c in rows],
                       fontsize=7)  # fmt: skip
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first finding on top
    low, high = ax.get_xlim()
    ax.set_xlim(min(low, -10.0), max(high, 10.0))
    ax.set_xlabel(f'a - b, points (95% interval); grey band: ±{EQUAL_MARGIN:g}, "as good as"')
    handles = [plt.Line2D([], [], marker='o', ls='', color=c, label=w) for w, c in VERDICT_COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))  # beside, not over
    ax.set_title("The papers' findings on the synthetic benchmark", fontsize=9)
    fig.tight_layout()
    return fig


def _provenance(record: dict) -> str:
    """Which commands made the figures (as they were typed), where, and what they cost."""
    parts = record['parts'].values()
    commits = sorted({p['commit'] or '?' for p in parts})
    made_by = '; '.join(f'`{p["command"]}` ({p["date"]})' for p in parts)
    machines = '; '.join(sorted({p['machine'] for p in parts}))
    return (
        f'Made by {made_by}. Ran at commit {", ".join(commits)} on {machines} '
        f'(benchmark format {", ".join(sorted({str(p["benchmark_format"]) for p in parts}))}; '
        f'{"; ".join(sorted({p["training"] for p in parts}))}); {sum(p["runs"] for p in parts)} runs, '
        f'{sum(p["run_seconds"] for p in parts) / 3600:.1f} h of training and evaluation.'
    )


def section(finding: Finding, record: dict | None) -> list[str]:
    """A finding's part of docs/findings.md."""
    record = record or {'parts': {}}
    verdicts = [contrast_verdict(record, c) for c in finding.contrasts]
    measured = '; '.join(str(v) for v in verdicts if v.effect is not None)
    lines = [f'## ({finding.key}) {finding.title}', '', f'{finding.source}: {finding.claim}', '']
    overall = overall_verdict(verdicts)
    lines += [f'**Verdict: {overall}**' + (f' ({measured}).' if measured else '.'), '']
    if overall == 'not reproduced' and finding.if_not_reproduced:
        explanation = finding.if_not_reproduced
        lines += [f'What might explain it (written with the recipe, before the runs): {explanation}', '']
    undecided = [c for c, v in zip(finding.contrasts, verdicts, strict=True) if v.word == 'inconclusive']
    for c in undecided:
        if n := seeds_to_decide(*scores(record, c), c.expect):
            lines += [f'"{c.label}" is inconclusive because the seeds spread more than the effect: at the '
                      f'same means and spreads, about {n} seeds a side would decide it.', '']  # fmt: skip
    lines += [f'Scaled to the benchmark: {finding.scaling}', '']
    lines += [
        f'`python tools/findings.py run {finding.key}` runs (into `work_dirs/findings/PART`, reused):',
        '',
    ]
    lines += [f'* `{part.name}`: `tools/compare.py {" ".join(part.command("work_dirs/findings", 3))}`'
              for part in finding.parts]  # fmt: skip
    lines += ['', '| contrast | score | a | b | paper (a vs b) | a - b, 95% interval | verdict |']
    lines += ['|---|---|---|---|---|---|---|']
    for c, v in zip(finding.contrasts, verdicts, strict=True):
        a, b = scores(record, c)
        interval = f'{v.effect:+.1f} ± {v.half_width:.1f}' if v.effect is not None else '-'
        lines.append(f'| {c.label} | {c.metric}, {c.shots}-shot | `{c.a}` {_cell(a)} | `{c.b}` {_cell(b)} | '
                     f'{c.paper or "-"} | {interval} | {v.word} |')  # fmt: skip
    if record['parts']:
        lines += ['', f'![finding {finding.key}](images/finding_{finding.key}.png)', '', _provenance(record)]
    return [*lines, '']


def task_rows(part: dict, names: list[str]) -> tuple[list[str], list[str]]:
    """The acceptance table's rows (a task, its prior, each connector's score, the best one's margin over
    the prior) and the tasks no connector learned by :data:`ACCEPTANCE_MARGIN` points."""
    from vlkit.data.synthetic import TASKS

    rows, unlearned = [], []
    for task in [*TASKS, 'overall']:
        values = [part_score(part, n, task) for n in names]
        prior = part['question_only'].get(task)
        best = max((v['mean'] for v in values if v), default=None)
        margin = best - prior if best is not None and prior is not None else None
        if task != 'overall' and (margin is None or margin < ACCEPTANCE_MARGIN):
            unlearned.append(task)
        cells = [_cell(v) for v in values]
        rows.append(f'| {task} | {_fmt(prior)} | {" | ".join(cells)} | {_fmt(margin, "+")} |')
    return rows, unlearned


def _fmt(value: float | None, sign: str = '') -> str:
    return '-' if value is None else f'{value:{sign}.1f}'


def locality_lines(part: dict) -> list[str]:
    """Per group of connectors with the same number of visual tokens, on each locality task: the spread
    between the best and the worst mean against twice the seeds' (pooled) standard deviation."""
    from vlkit.data.synthetic import LOCALITY_TASKS

    groups: dict[int, list[str]] = {}
    for name, tokens in part['visual_tokens'].items():
        groups.setdefault(tokens, []).append(name)
    lines = []
    for tokens, names in sorted(groups.items()):
        for task in LOCALITY_TASKS if len(names) > 1 else ():
            values = [v for n in names if (v := part_score(part, n, task))]
            stds = [v['std'] for v in values if v['std'] is not None]
            if len(values) < 2 or len(stds) < len(values):
                continue
            spread = max(v['mean'] for v in values) - min(v['mean'] for v in values)
            noise = 2 * math.sqrt(sum(x * x for x in stds) / len(stds))
            verdict_text = 'they differ' if spread > noise else "within the seeds' spread"
            lines.append(
                f'* {task}, {tokens} tokens ({", ".join(names)}): best - worst {spread:.1f} points, '
                f'twice the seed std {noise:.1f}: {verdict_text}.'
            )
    return lines


def acceptance_section(record: dict | None) -> list[str]:
    """The benchmark's acceptance: per task and connector, the mean ± std over seeds against the prior."""
    part = (record or {'parts': {}})['parts'].get('acceptance')
    command = ' '.join(ACCEPTANCE.parts[0].command('work_dirs/findings', 3))
    lines = ['## The benchmark, accepted before the findings', '', f'`tools/compare.py {command}`', '']
    if not part:
        return [*lines, '**Not run yet.**', '']
    names = sorted(
        part['architectures'], key=lambda n: -(part_score(part, n, 'overall') or {'mean': -1})['mean']
    )
    rows, unlearned = task_rows(part, names)
    heads = [f'{n} ({part["visual_tokens"].get(n, "?")} tokens)' for n in names]
    margin = f'{ACCEPTANCE_MARGIN:g} points'
    verdict_text = (
        f'**Accepted**: on every task at least one connector scores {margin} or more above the question-only '
        'prior (mean over the seeds).'
        if not unlearned
        else f'**Not accepted**: no connector is {margin} above the prior on {", ".join(unlearned)}.'
    )
    lines += [verdict_text, '', f'| task | question only | {" | ".join(heads)} | best - prior |']
    lines += ['|' + '---|' * (len(names) + 3), *rows, '']
    missing = [c for c in ACCEPTANCE_CONNECTORS if c not in part['architectures']]
    if missing:
        lines += [f'Not run yet: {", ".join(missing)}.', '']
    locality = locality_lines(part)
    if locality:
        lines += [
            'Connectors with the same number of visual tokens, on the tasks where locality matters:',
            '',
        ]
        lines += [*locality, '']
    return [*lines, _provenance(record), '']


RULE = (
    'Fixed before any finding ran: the benchmark (its format and tasks, accepted on its own criteria, '
    'below), every recipe (configs, connectors, token counts, scaling), the contrasts and their expected '
    "direction, the verdict rule, and each finding's possible explanations should it not reproduce. The "
    '95% interval of a - b is the difference of the means ± twice its '
    'standard error over the seeds. A "higher" contrast is reproduced when the interval lies above 0, and '
    f'not reproduced when it lies below 0 or within ±{EQUAL_MARGIN:g} points; an "equal" one is reproduced '
    f'when the interval lies within ±{EQUAL_MARGIN:g} points, and not reproduced when it excludes 0; '
    'anything else is inconclusive. A finding is reproduced when all its contrasts are.'
)


def document(records: dict[str, dict]) -> str:
    """docs/findings.md from the kept records (key -> record)."""
    ran = [r for r in records.values() if r and r['parts']]
    seconds = {name: p['run_seconds'] for r in ran for name, p in r['parts'].items()}  # shared parts once
    comparisons = {p.name for f in RECIPES.values() for p in f.parts}
    head = [
        '# Findings',
        '',
        '<!-- Generated by `python tools/findings.py render` from docs/results/findings/*.json. -->',
        '',
        "The papers' findings behind vlkit's connectors and fusions, re-tested at small scale on the "
        'synthetic benchmark ([data.md](data.md#the-synthetic-benchmark)), each by one command. ' + RULE,
        '',
        f'Ran so far: {len(seconds)} of {len(comparisons)} comparisons, {sum(seconds.values()) / 3600:.1f} h '
        'of training and evaluation on this machine.',
        '',
        '![every contrast of every finding, with its verdict](images/findings.png)',
        '',
    ]
    body = acceptance_section(records.get(ACCEPTANCE.key))
    body += [line for f in FINDINGS for line in section(f, records.get(f.key))]
    return '\n'.join(head + body)


def render(check: bool = False) -> int:
    """Writes docs/findings.md and the plots of the findings that ran; with ``check``, 1 if the document
    differs from what the records give."""
    records = {k: _load(p) for k in RECIPES if osp.isfile(p := osp.join(KEPT, f'{k}.json'))}
    text = document(records)
    current = open(DOC).read() if osp.isfile(DOC) else None
    if check:
        if current != text:
            print(f'{osp.relpath(DOC, ROOT)} differs from its records: run python tools/findings.py render')
        return int(current != text)
    from vlkit.analysis.report import _pyplot

    figures = {'findings': headline_figure(records)}
    figures |= {
        f'finding_{k}': figure(BY_KEY[k], r) for k, r in records.items() if r['parts'] and k in BY_KEY
    }
    for name, fig in figures.items():
        fig.savefig(osp.join(IMAGES, f'{name}.png'), dpi=110)
        _pyplot().close(fig)
    with open(DOC, 'w') as f:
        f.write(text)
    print(f'wrote {osp.relpath(DOC, ROOT)}')
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest='action', required=True)
    sub.add_parser('list', help='the findings and their compare commands')
    for name in ('run', 'collect'):
        p = sub.add_parser(name, help=f'{name} one finding')
        p.add_argument('key', choices=list(RECIPES), help='a finding (a-e), or the benchmark acceptance')
        p.add_argument(
            '--out', default='work_dirs/findings', help='where the runs go (default work_dirs/findings)'
        )
        if name == 'run':
            p.add_argument('--seeds', type=int, default=3, help='runs per architecture (default 3)')
    sub.add_parser('render', help='docs/findings.md from the kept records').add_argument(
        '--check', action='store_true'
    )
    args = parser.parse_args(argv)
    if args.action == 'list':
        for f in RECIPES.values():
            print(f'({f.key}) {f.title}')
            print(
                ''.join(
                    f'    tools/compare.py {" ".join(p.command("work_dirs/findings", 3))}\n' for p in f.parts
                )
            )
        return 0
    if args.action == 'run':
        return run(RECIPES[args.key], args.out, args.seeds)
    if args.action == 'collect':
        collect(RECIPES[args.key], args.out)
        return 0
    return render(args.check)


if __name__ == '__main__':
    sys.exit(main())
