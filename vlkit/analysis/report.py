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
        status: ``trained``, ``reused`` (a finished work dir with the same config hash), ``profiled``
            (``--profile-only``) or ``failed``.
        tokens_note: why the visual-token count differs from the one asked for (e.g. no token knob).
        error: the failure's last words, when ``status == 'failed'``.
        log: the log to read about this run.
        work_dir: the run's work dir.
        config_hash: hash of the run's config and options.
        seed: ``randomness.seed`` of the run's config.
        train_samples: samples seen in training (iterations x batch size), for the training compute.
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


def _style(i: int, run: RunResult, runs: list[RunResult]) -> dict:
    """One colour per run, one marker per fusion (in the order the fusions first appear), the same in
    every plot."""
    fusions = list(dict.fromkeys(r.fusion for r in runs))
    return {'color': f'C{i % 10}', 'marker': MARKERS[fusions.index(run.fusion) % len(MARKERS)]}


def _quality_label(runs: list[RunResult], evaluation: str) -> str:
    names = {k for r in runs for k in r.metrics.get(evaluation, {}) if k.split('/')[-1] == QUALITY_KEY}
    metric = ', '.join(sorted(names)) or QUALITY_KEY
    percent = ' (%)' if any(n.startswith(('exact_match', 'vqa')) for n in names) else ''
    return f'{evaluation}: {metric}{percent}'


def plot_loss_curves(runs: list[RunResult], path: str) -> bool:
    """Every run's training loss against the iteration, overlaid; False (and no file) without curves."""
    if not any(r.loss_curve for r in runs):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, run in enumerate(runs):
        if run.loss_curve:
            steps, losses = zip(*run.loss_curve, strict=True)
            style = _style(i, run, runs)
            ax.plot(
                steps, losses, label=run.name, color=style['color'], marker='.' if len(steps) < 30 else None
            )
    ax.set_xlabel('training iteration')
    ax.set_ylabel('training loss (next-token cross-entropy)')
    ax.set_title('Training loss')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_pareto(
    runs: list[RunResult], x_values: list, x_label: str, evaluation: str | None, path: str
) -> bool:
    """Quality against a cost, one point per run, the Pareto front (cheaper and better) marked."""
    points = [(x, r.quality(evaluation)) for x, r in zip(x_values, runs, strict=True)]
    if not any(x is not None and y is not None for x, y in points):
        return False
    front = pareto_front(points)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, (run, (x, y)) in enumerate(zip(runs, points, strict=True)):
        if x is None or y is None:
            continue
        on_front = i in front
        ax.scatter(
            x, y, s=110 if on_front else 50, edgecolors='black' if on_front else 'none', zorder=3,
            label=run.name, **_style(i, run, runs),
        )  # fmt: skip
        ax.annotate(run.name, (x, y), textcoords='offset points', xytext=(6, 5), fontsize=8)
    fx, fy = zip(*(points[i] for i in front), strict=True)
    ax.step(fx, fy, where='post', color='black', linestyle='--', linewidth=1, label='Pareto front', zorder=2)
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
    ax.set_xlabel(x_label)
    ax.set_ylabel(_quality_label(runs, evaluation or ''))
    ax.set_title(f'Quality against {x_label.split(" (")[0]} (outlined: Pareto front)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='best')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


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


def plot_costs(runs: list[RunResult], path: str) -> bool:
    """Cost bars per run: parameters, FLOPs per sample and time (when measured)."""
    if not any(r.profile for r in runs):
        return False
    runs = [r for r in runs if r.profile]
    plt = _pyplot()
    names = [r.name for r in runs]

    def column(key: str, scale: float = 1.0, invert: bool = False) -> list:
        values = [r.profile.get(key) for r in runs]
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
    fig, axes = plt.subplots(
        1, len(measured), figsize=(4.4 * len(measured), 1.6 + 0.9 * len(runs)), squeeze=False
    )
    for ax, (x_label, title, series) in zip(axes[0], measured, strict=True):
        _grouped_barh(ax, names, series, x_label, title)
    missing = [
        title.lower() for _, title, series in panels if all(v is None for v in sum(series.values(), []))
    ]
    if missing:
        fig.suptitle(f'{", ".join(missing)}: not measured (--profile-only)', fontsize=9, y=0.995, ha='center')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def make_plots(runs: list[RunResult], out_dir: str) -> dict[str, str]:
    """Writes the PNG plots that the runs have data for; returns plot name -> file name."""
    evaluation = next(iter(evaluations(runs)), None)
    flops_label = 'training compute (FLOPs, 2·MAC)'
    tokens_label = 'visual tokens per image'
    made = {
        'loss': plot_loss_curves(runs, osp.join(out_dir, PLOTS['loss'])),
        'flops': plot_pareto(
            runs, [r.train_flops() for r in runs], flops_label, evaluation, osp.join(out_dir, PLOTS['flops'])
        ),
        'tokens': plot_pareto(
            runs,
            [r.profile.get('visual_tokens_per_image') for r in runs],
            tokens_label,
            evaluation,
            osp.join(out_dir, PLOTS['tokens']),
        ),
        'costs': plot_costs(runs, osp.join(out_dir, PLOTS['costs'])),
    }
    return {name: PLOTS[name] for name, ok in made.items() if ok}


def _metric_cell(run: RunResult, evaluation: str, metric: str) -> str:
    if run.failed:
        return 'failed'
    value = run.metrics.get(evaluation, {}).get(metric)
    return '—' if value is None else f'{value:.1f}'


def tables(runs: list[RunResult]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables as ``(title, headers, rows)``, one row per architecture in each."""
    overview = [
        [
            r.name,
            r.connector,
            r.fusion,
            format_profile('visual_tokens_per_image', r.profile.get('visual_tokens_per_image'))
            + (f' ({r.tokens_note})' if r.tokens_note else ''),
            r.status + (f': {r.error}' if r.error else ''),
            r.config_hash,
            '' if r.seed is None else str(r.seed),
            r.log or '',
        ]
        for r in runs
    ]
    keys = profile_keys(runs)
    cost = [[r.name, *(format_profile(k, r.profile.get(k)) for k in keys)] for r in runs]
    columns = metric_columns(runs)
    quality = [[r.name, r.status, *(_metric_cell(r, e, m) for e, m in columns)] for r in runs]
    for label, values in references(runs).items():
        cells = (values.get(m.split('/')[-1]) for _, m in columns)
        quality.append([label, 'reference', *('—' if v is None else f'{v:.1f}' for v in cells)])
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
        result.append(('Quality', headers, quality))
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
"""


def _html_table(headers: list[str], rows: list[list[str]], failed: set[str]) -> str:
    head = ''.join(f'<th>{html.escape(h)}</th>' for h in headers)
    body = ''.join(
        f'<tr{" class=failed" if row[0] in failed else ""}>'
        + ''.join(f'<td>{html.escape(str(c))}</td>' for c in row)
        + '</tr>'
        for row in rows
    )
    return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def html_report(runs: list[RunResult], meta: dict, env: dict, plots: dict[str, str], out_dir: str) -> str:
    """The report as one self-contained HTML page: inline CSS, PNG plots embedded as base64."""
    facts = ''.join(
        f'<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>' for k, v in {**meta, **env}.items()
    )
    parts = [
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Connector comparison</title>',
        f'<style>{_CSS}</style></head><body><h1>Connector comparison</h1><dl>{facts}</dl>',
    ]
    failed = {r.name for r in runs if r.failed}
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


def write_report(runs: list[RunResult], out_dir: str, meta: dict | None = None) -> dict[str, str]:
    """Writes ``report.md``, ``report.html``, the PNG plots and ``results.json`` (every figure of every run)
    into ``out_dir``; returns what was written, by name."""
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
            json.dumps({'meta': meta, 'environment': env, 'runs': [vars(r) for r in runs]}, indent=2),
        ),
    ):
        written[name] = osp.join(out_dir, name)
        with open(written[name], 'w') as f:
            f.write(text)
    return written
