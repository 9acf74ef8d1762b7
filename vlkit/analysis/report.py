"""The side-by-side report of a comparison (``tools/compare.py``): tables, plots, Markdown and HTML.

Everything here works on :class:`RunResult` records, so the report is built and tested without training.
Costs come from :func:`vlkit.analysis.profile_config` (flat keys such as ``params/total`` or
``flops/train_step_per_sample``), quality from ``tools/test.py``'s JSON results, loss curves from each run's
``vis_data/scalars.json``. FLOPs are counted as 2·MAC.
"""

from __future__ import annotations

import base64
import glob
import html
import json
import os
import os.path as osp
import platform
import subprocess
from dataclasses import dataclass, field
from importlib import metadata

QUALITY_KEY = 'overall'
PLOTS = {
    'loss': 'loss_curves.png',
    'flops': 'quality_vs_train_flops.png',
    'tokens': 'quality_vs_visual_tokens.png',
    'costs': 'costs.png',
}
# profile key prefix -> (unit shown in headers, divisor)
UNITS = {
    'params/': ('M', 1e6),
    'trainable/': ('M', 1e6),
    'flops/': ('GFLOP', 1e9),
    'memory/': ('MiB', 2**20),
}


@dataclass
class RunResult:
    """One architecture of a comparison: what was run, what it cost and how well it did.

    Attributes:
        name: the row's label, e.g. ``qformer+autoregressive``.
        connector: the connector's registry type.
        fusion: the fusion's registry type.
        status: ``trained``, ``reused`` (a finished work dir with the same config hash), ``resumed`` (an
            unfinished one, from its last checkpoint), ``profiled`` (``--profile-only``) or ``failed``.
        tokens_note: why the visual-token count differs from the one asked for (e.g. no token knob).
        error: the failure's last words, when ``status == 'failed'``.
        log: the log to read about this run.
        work_dir: the run's work dir.
        config_hash: hash of the run's config and options.
        seed: ``randomness.seed`` of the run's config.
        train_samples: samples seen in training (iterations x batch size), for the training compute.
        train_iters: training iterations of the run's own config (options applied).
        seconds: wall seconds of the run's parts (``training``: ``tools/train.py``'s own record;
            ``evaluation``: every ``tools/test.py`` run, summed).
        profile: :func:`vlkit.analysis.profile_config`'s figures.
        metrics: evaluation name (e.g. ``val 0-shot``) -> metric name -> value.
        loss_curve: ``(iteration, loss)`` pairs.
        references: scores to read the run's against, that its evaluation reported (e.g. ``question only``,
            the most frequent training answer per question): label -> task -> value.
    """

    name: str
    connector: str = ''
    fusion: str = ''
    status: str = 'trained'
    tokens_note: str = ''
    error: str | None = None
    log: str | None = None
    work_dir: str | None = None
    config_hash: str = ''
    seed: int | None = None
    train_samples: int | None = None
    train_iters: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    references: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == 'failed'

    def train_flops(self) -> float | None:
        """Training compute of the whole run: FLOPs per training sample x samples seen."""
        per_sample = self.profile.get('flops/train_step_per_sample')
        return per_sample * self.train_samples if per_sample and self.train_samples else None

    def quality(self, evaluation: str | None) -> float | None:
        """The headline score of an evaluation: its ``overall`` (or ``*/overall``) metric."""
        values = self.metrics.get(evaluation or '', {})
        return next((v for k, v in values.items() if k.split('/')[-1] == QUALITY_KEY), None)


@dataclass(frozen=True)
class Spread:
    """A figure over the seeds of an architecture: the mean, the sample standard deviation (``None`` for a
    single run) and the number of runs it is over."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        if not values:
            return None
        mean = sum(values) / len(values)
        if len(values) < 2:
            return cls(mean, None, 1)
        variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        return cls(mean, variance**0.5, len(values))

    def __str__(self) -> str:
        return f'{self.mean:.1f}' if self.std is None else f'{self.mean:.1f} ± {self.std:.1f}'


@dataclass
class Architecture:
    """The runs of one architecture, one per seed, and their figures over the seeds. The costs do not
    depend on the seed: they are the first profiled run's."""

    name: str
    runs: list[RunResult]

    @property
    def done(self) -> list[RunResult]:
        return [r for r in self.runs if not r.failed]

    @property
    def failed(self) -> bool:
        return not self.done

    @property
    def profile(self) -> dict:
        return next((r.profile for r in self.runs if r.profile), {})

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs if r.seed is not None]

    def train_flops(self) -> float | None:
        per_sample = self.profile.get('flops/train_step_per_sample')
        samples = next((r.train_samples for r in self.runs if r.train_samples), None)
        return per_sample * samples if per_sample and samples else None

    def score(self, evaluation: str, metric: str) -> Spread | None:
        """One metric over the finished runs that have it."""
        values = [r.metrics.get(evaluation, {}).get(metric) for r in self.done]
        return Spread.of([v for v in values if v is not None])

    def quality(self, evaluation: str | None) -> Spread | None:
        """The headline score (``overall``) over the finished runs that have it."""
        return Spread.of([q for q in (r.quality(evaluation) for r in self.done) if q is not None])

    def loss_band(self) -> list[tuple[int, Spread]]:
        """The training loss over the seeds at every iteration logged by all the runs that have a curve."""
        curves = [dict(r.loss_curve) for r in self.runs if r.loss_curve]
        steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        return [(step, Spread.of([c[step] for c in curves])) for step in steps]

    def status(self) -> str:
        """``trained``, or with several seeds the count of each status (``trained x2, failed x1``), with the
        first failure's words."""
        counts = dict.fromkeys(r.status for r in self.runs)
        text = ', '.join(
            s if len(self.runs) == 1 else f'{s} x{sum(r.status == s for r in self.runs)}' for s in counts
        )
        error = next((r.error for r in self.runs if r.error), None)
        return text + (f': {error}' if error else '')


def by_architecture(runs: list[RunResult]) -> list[Architecture]:
    """The runs grouped by architecture name (its seeds), in first-seen order."""
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run.name, []).append(run)
    return [Architecture(name, group) for name, group in groups.items()]


def load_loss_curve(work_dir: str) -> list[tuple[int, float]]:
    """``(iteration, loss)`` from every ``*/vis_data/scalars.json`` of a work dir; a later run (a resume)
    overrides the iterations it repeats."""
    curve: dict[int, float] = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'loss' in record and 'step' in record:
                    curve[int(record['step'])] = float(record['loss'])
    return sorted(curve.items())


def pareto_front(points: list[tuple[float | None, float | None]]) -> list[int]:
    """Indices of the points no other point beats: lower or equal cost ``x`` and higher quality ``y``
    (points with a missing coordinate are never on the front), ordered by cost."""
    valid = sorted((x, -y, i) for i, (x, y) in enumerate(points) if x is not None and y is not None)
    front, best = [], float('-inf')
    for _, neg_y, i in valid:
        if -neg_y > best:
            front.append(i)
            best = -neg_y
    return front


def references(runs: list[RunResult]) -> dict[str, dict[str, float]]:
    """Every reference score set met in the runs (the first one of each label)."""
    found: dict[str, dict[str, float]] = {}
    for run in runs:
        for label, values in run.references.items():
            found.setdefault(label, values)
    return found


def evaluations(runs: list[RunResult]) -> list[str]:
    """Every evaluation name met in the runs, in first-seen order."""
    return list(dict.fromkeys(e for r in runs for e in r.metrics))


def metric_columns(runs: list[RunResult]) -> list[tuple[str, str]]:
    """``(evaluation, metric)`` columns: per evaluation, its metrics sorted with ``overall`` last."""
    columns = []
    for evaluation in evaluations(runs):
        names = dict.fromkeys(k for r in runs for k in r.metrics.get(evaluation, {}))
        ordered = sorted(names, key=lambda k: (k.split('/')[-1] == QUALITY_KEY, k))
        columns += [(evaluation, k) for k in ordered]
    return columns


def profile_keys(runs: list[RunResult]) -> list[str]:
    """Every profile key met in the runs, in first-seen order."""
    return list(dict.fromkeys(k for r in runs for k in r.profile))


def profile_header(key: str) -> str:
    """``memory/train_step_peak_bytes`` -> ``memory/train_step_peak (MiB)``: the key in its shown unit."""
    unit = next((u for prefix, (u, _) in UNITS.items() if key.startswith(prefix)), None)
    return f'{key.removesuffix("_bytes")} ({unit})' if unit else key


def format_profile(key: str, value) -> str:
    """A profile figure in the unit of its header (M parameters, GFLOP, MiB), or as measured."""
    if value is None:
        return 'n/a'
    scale = next((s for prefix, (_, s) in UNITS.items() if key.startswith(prefix)), 1)
    if scale == 1 and float(value).is_integer():
        return f'{int(value):,}'
    scaled = value / scale
    return f'{scaled:.3g}' if abs(scaled) < 100 else f'{scaled:,.0f}'


def overall_definitions(runs: list[RunResult]) -> dict[str, str]:
    """What ``overall`` means for each metric in the runs (each metric class states it), for the header."""
    from ..registry import METRICS

    METRICS.import_from_location()
    stated = {
        getattr(cls, 'default_prefix', None): getattr(cls, 'overall_definition', None)
        for cls in METRICS.module_dict.values()
    }
    prefixes = dict.fromkeys(
        k.split('/')[0] for r in runs for values in r.metrics.values() for k in values if '/' in k
    )
    return {f'{p}/{QUALITY_KEY}': stated[p] for p in prefixes if stated.get(p)}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return 'not installed'


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit(path: str) -> str | None:
    try:
        out = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], cwd=path, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, str]:
    """Package versions and the machine, for the report's header."""
    import torch

    gpu = (
        ', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if torch.cuda.is_available()
        else 'none'
    )
    env = {f'{p} version': _version(p) for p in ('torch', 'transformers', 'mmengine', 'vlkit')}
    env.update(
        python=platform.python_version(),
        cpu=_cpu_model(),
        cores=str(os.cpu_count()),
        threads=str(torch.get_num_threads()),
        gpu=gpu,
    )
    commit = _git_commit(osp.dirname(osp.abspath(__file__)))
    if commit:
        env['vlkit commit'] = commit
    return env


def _pyplot():
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


MARKERS = ('o', 's', '^', 'D', 'v', 'P')


def _style(i: int, arch: Architecture, archs: list[Architecture]) -> dict:
    """One colour per architecture, one marker per fusion (in the order the fusions first appear), the same
    in every plot."""
    fusions = list(dict.fromkeys(a.runs[0].fusion for a in archs))
    return {'color': f'C{i % 10}', 'marker': MARKERS[fusions.index(arch.runs[0].fusion) % len(MARKERS)]}


def _quality_label(runs: list[RunResult], evaluation: str) -> str:
    names = {k for r in runs for k in r.metrics.get(evaluation, {}) if k.split('/')[-1] == QUALITY_KEY}
    metric = ', '.join(sorted(names)) or QUALITY_KEY
    percent = ' (%)' if any(n.startswith(('exact_match', 'vqa')) for n in names) else ''
    return f'{evaluation}: {metric}{percent}'


def _save(fig, path: str) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return True


def loss_figure(archs: list[Architecture]):
    """Every architecture's training loss against the iteration, overlaid: the mean over its seeds, with a
    band of ± one standard deviation where there are several; None without curves."""
    bands = [a.loss_band() for a in archs]
    if not any(bands):
        return None
    fig, ax = _pyplot().subplots(figsize=(7.5, 4.5))
    for i, (arch, band) in enumerate(zip(archs, bands, strict=True)):
        if not band:
            continue
        steps = [step for step, _ in band]
        means = [s.mean for _, s in band]
        color = _style(i, arch, archs)['color']
        ax.plot(steps, means, label=arch.name, color=color, marker='.' if len(steps) < 30 else None)
        if band[0][1].std is not None:
            ax.fill_between(
                steps,
                [s.mean - s.std for _, s in band],
                [s.mean + s.std for _, s in band],
                color=color,
                alpha=0.2,
            )
    ax.set_xlabel('training iteration')
    seeds = max(len(a.runs) for a in archs)
    ax.set_ylabel('training loss (next-token cross-entropy)')
    ax.set_title('Training loss' + (f' (mean ± std over {seeds} seeds)' if seeds > 1 else ''))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def pareto_figure(archs: list[Architecture], x_values: list, x_label: str, evaluation: str | None):
    """Quality against a cost, one point per architecture (the mean over its seeds, with a ± one standard
    deviation error bar), the Pareto front of the means (cheaper and better) marked; None without points."""
    spreads = [a.quality(evaluation) for a in archs]
    points = [(x, s.mean if s else None) for x, s in zip(x_values, spreads, strict=True)]
    if not any(x is not None and y is not None for x, y in points):
        return None
    front = pareto_front(points)
    fig, ax = _pyplot().subplots(figsize=(7.5, 4.5))
    for i, (arch, (x, y), spread) in enumerate(zip(archs, points, spreads, strict=True)):
        if x is None or y is None:
            continue
        on_front = i in front
        style = _style(i, arch, archs)
        ax.errorbar(x, y, yerr=spread.std or 0.0, fmt='none', ecolor=style['color'], capsize=4, zorder=2)
        ax.scatter(
            x, y, s=110 if on_front else 50, edgecolors='black' if on_front else 'none', zorder=3,
            label=arch.name, **style,
        )  # fmt: skip
        ax.annotate(arch.name, (x, y), textcoords='offset points', xytext=(6, 5), fontsize=8)
    fx, fy = zip(*(points[i] for i in front), strict=True)
    ax.step(fx, fy, where='post', color='black', linestyle='--', linewidth=1, label='Pareto front', zorder=2)
    runs = [r for a in archs for r in a.runs]
    for k, (label, values) in enumerate(references(runs).items()):
        if values.get(QUALITY_KEY) is not None:
            ax.axhline(values[QUALITY_KEY], color='grey', linestyle=':', linewidth=1.2 + k, label=label)
    if min(fx) > 0 and max(x for x, _ in points if x) / min(x for x, _ in points if x) > 20:
        ax.set_xscale('log')
    if 'FLOP' in x_label:
        from matplotlib.ticker import EngFormatter, MaxNLocator

        ax.xaxis.set_major_formatter(EngFormatter(unit='FLOP'))
        if ax.get_xscale() == 'linear':
            ax.xaxis.set_major_locator(MaxNLocator(6))
    seeds = max(s.n for s in spreads if s)
    ax.set_xlabel(x_label)
    ax.set_ylabel(_quality_label(runs, evaluation or ''))
    title = f'Quality against {x_label.split(" (")[0]} (outlined: Pareto front)'
    ax.set_title(title + (f'\nmean ± std over {seeds} seeds' if seeds > 1 else ''), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='best')
    return fig


def _grouped_barh(ax, names: list[str], series: dict[str, list], x_label: str, title: str) -> None:
    """Horizontal bars, one group per run and one bar per series; a missing value draws no bar."""
    height = 0.8 / max(len(series), 1)
    for k, (label, values) in enumerate(series.items()):
        ys = [i + k * height for i in range(len(names))]
        ax.barh(ys, [v or 0 for v in values], height=height, label=label, color=f'C{k}')
    ax.set_yticks([i + height * (len(series) - 1) / 2 for i in range(len(names))], names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(x_label)
    ax.set_title(title, fontsize=10)
    ax.grid(axis='x', alpha=0.3)
    ax.legend(fontsize=7, loc='best')


def costs_figure(archs: list[Architecture]):
    """Cost bars per architecture: parameters, FLOPs per sample and time (when measured); None unprofiled."""
    archs = [a for a in archs if a.profile]
    if not archs:
        return None
    names = [a.name for a in archs]

    def column(key: str, scale: float = 1.0, invert: bool = False) -> list:
        values = [a.profile.get(key) for a in archs]
        return [None if v is None else (scale / v if invert else v / scale) for v in values]

    panels = [
        ('parameters (M)', 'Parameters', {
            'total': column('params/total', 1e6), 'trainable': column('params/trainable', 1e6)}),
        ('GFLOP per sample (2·MAC)', 'Compute', {
            'forward': column('flops/forward_per_sample', 1e9),
            'train step': column('flops/train_step_per_sample', 1e9)}),
        ('milliseconds', 'Time', {
            'train step per sample': column('speed/train_samples_per_s', 1e3, invert=True),
            'time to first token': column('speed/time_to_first_token_ms')}),
    ]  # fmt: skip
    measured = [p for p in panels if any(v is not None for v in sum(p[2].values(), []))]
    if not measured:  # a profile without any cost figure (e.g. visual tokens only)
        return None
    fig, axes = _pyplot().subplots(
        1, len(measured), figsize=(4.4 * len(measured), 1.6 + 0.9 * len(archs)), squeeze=False
    )
    for ax, (x_label, title, series) in zip(axes[0], measured, strict=True):
        _grouped_barh(ax, names, series, x_label, title)
    missing = [
        title.lower() for _, title, series in panels if all(v is None for v in sum(series.values(), []))
    ]
    if missing:
        fig.suptitle(f'{", ".join(missing)}: not measured (--profile-only)', fontsize=9, y=0.995, ha='center')
    return fig


def make_plots(runs: list[RunResult], out_dir: str) -> dict[str, str]:
    """Writes the PNG plots that the runs have data for; returns plot name -> file name."""
    archs = by_architecture(runs)
    evaluation = next(iter(evaluations(runs)), None)
    figures = {
        'loss': loss_figure(archs),
        'flops': pareto_figure(
            archs, [a.train_flops() for a in archs], 'training compute (FLOPs, 2·MAC)', evaluation
        ),
        'tokens': pareto_figure(
            archs,
            [a.profile.get('visual_tokens_per_image') for a in archs],
            'visual tokens per image',
            evaluation,
        ),
        'costs': costs_figure(archs),
    }
    return {
        name: PLOTS[name]
        for name, fig in figures.items()
        if fig and _save(fig, osp.join(out_dir, PLOTS[name]))
    }


def _score_cell(arch: Architecture, evaluation: str, metric: str) -> str:
    if arch.failed:
        return 'failed'
    spread = arch.score(evaluation, metric)
    return '—' if spread is None else str(spread)


def _runs_table(archs: list[Architecture], columns: list[tuple[str, str]]) -> tuple:
    """Every run on its own row, with its seed and its headline scores: where each mean comes from."""
    overall = [(e, m) for e, m in columns if m.split('/')[-1] == QUALITY_KEY]
    rows = [
        [a.name, '' if r.seed is None else str(r.seed), r.status, r.work_dir or '',
         *('failed' if r.failed else f'{r.metrics.get(e, {}).get(m, float("nan")):.1f}' for e, m in overall)]
        for a in archs for r in a.runs
    ]  # fmt: skip
    headers = ['architecture', 'seed', 'status', 'work dir', *(f'{e}: {m}' for e, m in overall)]
    return 'Runs (one per seed)', headers, rows


def tables(runs: list[RunResult]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables as ``(title, headers, rows)``, one row per architecture in each (and, with
    several seeds, a table of the runs themselves)."""
    archs = by_architecture(runs)
    overview = [
        [
            a.name,
            a.runs[0].connector,
            a.runs[0].fusion,
            format_profile('visual_tokens_per_image', a.profile.get('visual_tokens_per_image'))
            + (f' ({a.runs[0].tokens_note})' if a.runs[0].tokens_note else ''),
            a.status(),
            a.runs[0].config_hash,
            ', '.join(map(str, a.seeds)),
            next((r.log for r in a.runs if r.failed and r.log), a.runs[0].log) or '',
        ]
        for a in archs
    ]
    keys = profile_keys(runs)
    cost = [[a.name, *(format_profile(k, a.profile.get(k)) for k in keys)] for a in archs]
    columns = metric_columns(runs)
    quality = [[a.name, a.status(), *(_score_cell(a, e, m) for e, m in columns)] for a in archs]
    for label, values in references(runs).items():
        cells = (values.get(m.split('/')[-1]) for _, m in columns)
        quality.append([label, 'reference', *('—' if v is None else f'{v:.1f}' for v in cells)])
    seeds = max(len(a.runs) for a in archs)
    result = [
        (
            'Architectures',
            ['architecture', 'connector', 'fusion', 'visual tokens', 'status', 'config hash', 'seed', 'log'],
            overview,
        ),
        ('Cost (FLOPs are 2·MAC)', ['architecture', *map(profile_header, keys)], cost),
    ]
    if columns:
        headers = ['architecture', 'status', *(f'{e}: {m}' for e, m in columns)]
        spread = f' (mean ± sample standard deviation over {seeds} seeds)' if seeds > 1 else ''
        result.append((f'Quality{spread}', headers, quality))
    if seeds > 1:
        result.append(_runs_table(archs, columns))
    return result


def _md_cell(text: str) -> str:
    return str(text).replace('|', '\\|').replace('\n', ' ')


def markdown_report(runs: list[RunResult], meta: dict, env: dict, plots: dict[str, str]) -> str:
    """The report as Markdown, with the plots linked beside it."""
    lines = ['# Connector comparison', '']
    lines += [f'* **{k}**: {_md_cell(v)}' for k, v in {**meta, **env}.items()]
    for title, headers, rows in tables(runs):
        lines += ['', f'## {title}', '', '| ' + ' | '.join(headers) + ' |', '|' + '---|' * len(headers)]
        lines += ['| ' + ' | '.join(_md_cell(c) for c in row) + ' |' for row in rows]
    if plots:
        lines += ['', '## Plots', '']
        lines += [f'![{name}]({file})' for name, file in plots.items()]
    return '\n'.join(lines) + '\n'


_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; font-weight: 600; }
tr.failed td { background: #fde8e8; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; font-size: 13px; }
dt { font-weight: 600; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
div.table { overflow-x: auto; max-width: 100%; }
"""


def _html_table(headers: list[str], rows: list[list[str]], failed: set[str]) -> str:
    head = ''.join(f'<th>{html.escape(h)}</th>' for h in headers)
    body = ''.join(
        f'<tr{" class=failed" if row[0] in failed else ""}>'
        + ''.join(f'<td>{html.escape(str(c))}</td>' for c in row)
        + '</tr>'
        for row in rows
    )
    # a wide table (the cost table has a column per profile figure) scrolls inside the page's width
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def html_report(runs: list[RunResult], meta: dict, env: dict, plots: dict[str, str], out_dir: str) -> str:
    """The report as one self-contained HTML page: inline CSS, PNG plots embedded as base64."""
    facts = ''.join(
        f'<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>' for k, v in {**meta, **env}.items()
    )
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Connector comparison</title>',
        f'<style>{_CSS}</style></head><body><h1>Connector comparison</h1><dl>{facts}</dl>',
    ]
    failed = {a.name for a in by_architecture(runs) if a.failed}
    for title, headers, rows in tables(runs):
        parts.append(f'<h2>{html.escape(title)}</h2>{_html_table(headers, rows, failed)}')
    if plots:
        parts.append('<h2>Plots</h2>')
    for name, file in plots.items():
        with open(osp.join(out_dir, file), 'rb') as f:
            data = base64.b64encode(f.read()).decode()
        parts.append(f'<div><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></div>')
    parts.append('</body></html>')
    return '\n'.join(parts)


def summary(runs: list[RunResult]) -> dict[str, dict]:
    """Architecture -> its seeds and, per evaluation and metric, the mean, std and count over the seeds."""
    columns = metric_columns(runs)
    return {
        a.name: {
            'seeds': a.seeds,
            'status': a.status(),
            'scores': {
                f'{e}: {m}': vars(spread) for e, m in columns if (spread := a.score(e, m)) is not None
            },
        }
        for a in by_architecture(runs)
    }


def write_report(runs: list[RunResult], out_dir: str, meta: dict | None = None) -> dict[str, str]:
    """Writes ``report.md``, ``report.html``, the PNG plots and ``results.json`` (every figure of every run,
    and each architecture's over its seeds) into ``out_dir``; returns what was written, by name."""
    os.makedirs(out_dir, exist_ok=True)
    meta = {**(meta or {}), **overall_definitions(runs)}
    env = environment()
    plots = make_plots(runs, out_dir)
    written = {name: osp.join(out_dir, file) for name, file in plots.items()}
    for name, text in (
        ('report.md', markdown_report(runs, meta, env, plots)),
        ('report.html', html_report(runs, meta, env, plots, out_dir)),
        (
            'results.json',
            json.dumps(
                {
                    'meta': meta,
                    'environment': env,
                    'architectures': summary(runs),
                    'runs': [vars(r) for r in runs],
                },
                indent=2,
            ),
        ),
    ):
        written[name] = osp.join(out_dir, name)
        with open(written[name], 'w') as f:
            f.write(text)
    return written
