from __future__ import annotations


def _task(key: str) -> str:
    return key.split('/', 1)[-1]


def format_accuracy_table(metrics: dict[str, float], columns: dict[str, dict[str, float]] | None = None) -> str:
    """A plain-text table: one row per task, ``overall`` last; extra named columns optional.

    Args:
        metrics: ``{'exact_match/colour': 81.0, ..., 'exact_match/overall': 62.3}`` (prefixes dropped).
        columns: more columns to print beside it, e.g. ``{'blank images': {...}, 'question only': {...}}``.
    """
    cols = {'accuracy': {_task(k): v for k, v in metrics.items()}}
    for name, values in (columns or {}).items():
        cols[name] = {_task(k): v for k, v in values.items()}
    tasks = sorted({t for c in cols.values() for t in c if t != 'overall'}) + ['overall']
    width = max(len(t) for t in tasks) + 2
    header = 'task'.ljust(width) + ''.join(name.rjust(max(len(name), 8) + 2) for name in cols)
    lines = [header, '-' * len(header)]
    for task in tasks:
        cells = ''.join(
            (f'{c[task]:.1f}' if task in c else '-').rjust(max(len(name), 8) + 2) for name, c in cols.items()
        )
        lines.append(task.ljust(width) + cells)
    return '\n'.join(lines)
