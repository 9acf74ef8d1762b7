"""The plain-text accuracy table that training logs and ``tools/test.py`` print."""

from __future__ import annotations


def _task(key: str) -> str:
    return key.split('/', 1)[-1]


def format_accuracy_table(columns: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per task (``overall`` last), one column per named result.

    Args:
        columns: e.g. ``{'images': {'exact_match/colour': 81.0, ...}, 'blank images': {...}}``; metric-name
            prefixes such as ``exact_match/`` are dropped.
    """
    cols = {name: {_task(k): v for k, v in values.items()} for name, values in columns.items()}
    tasks = sorted({t for c in cols.values() for t in c if t != 'overall'}) + ['overall']
    width = max(len(t) for t in tasks) + 2
    widths = {name: max(len(name), 8) + 2 for name in cols}
    header = 'task'.ljust(width) + ''.join(name.rjust(widths[name]) for name in cols)
    lines = [header, '-' * len(header)]
    for task in tasks:
        cells = ''.join(
            (f'{c[task]:.1f}' if task in c else '-').rjust(widths[name]) for name, c in cols.items()
        )
        lines.append(task.ljust(width) + cells)
    return '\n'.join(lines)
