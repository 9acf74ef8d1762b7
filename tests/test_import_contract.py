"""The layer contract: lower layers never import higher ones, function-level imports included.

``LAYERS`` is the one place the order is written down (docs/architecture.md explains it; change it only with a
reason there). Within a layer, groups separated into ``INDEPENDENT`` pairs may not import each other: models
and data sit side by side, and data receives a tokenizer spec instead of importing the language model.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, ...]] = [
    # 1. constants, registries, where pretrained names point
    ('vlkit', 'vlkit.constants', 'vlkit.pretrained', 'vlkit.registry', 'vlkit.tokenization'),
    ('vlkit.ops',),  # 2. the numerical primitives
    ('vlkit.models', 'vlkit.connectors', 'vlkit.convert', 'vlkit.data'),  # 3. parts | data
    ('vlkit.evaluation',),  # 4
    ('vlkit.engine',),  # 5
    ('vlkit.analysis',),  # 6
    ('vlkit.config', 'vlkit.config_check', 'vlkit.inference'),  # 7. configs; a model from its config
    ('vlkit.testing', 'tools', 'benchmarks'),  # 8. tools, benchmarks, test presets
]
INDEPENDENT = [(('vlkit.models', 'vlkit.connectors', 'vlkit.convert'), ('vlkit.data',))]
FORBIDDEN = {
    'tests': 'code outside tests/ imports nothing from tests/',
    'connectors': 'the built-in connectors are vlkit.connectors',
}


def module_name(path: Path) -> str:
    """The dotted name a source file is imported as (``connectors/x.py`` is ``vlkit.connectors.x``)."""
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[0] == 'connectors':
        parts = ['vlkit', *parts]
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join(parts)


def layer_of(name: str) -> tuple[int, str] | None:
    """(layer index, the group prefix it matched) of a module, by its longest listed prefix."""
    matches = [
        (len(prefix), i, prefix)
        for i, group in enumerate(LAYERS)
        for prefix in group
        if name == prefix or name.startswith(prefix + '.')
    ]
    return max(matches)[1:] if matches else None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in the file, nested ones included, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[: len(package.split('.')) - node.level + 1]
                base = '.'.join([*anchor, base] if base else anchor)
            found += [(node.lineno, f'{base}.{alias.name}') for alias in node.names]
    return found


def _independent(a: str, b: str) -> bool:
    for left, right in INDEPENDENT:
        in_left = lambda n, g: any(n == p or n.startswith(p + '.') for p in g)  # noqa: E731
        if (in_left(a, left) and in_left(b, right)) or (in_left(a, right) and in_left(b, left)):
            return True
    return False


def violations(files: list[Path]) -> list[str]:
    """Every import that breaks the contract, as ``file:line: what``."""
    found = []
    for path in files:
        importer = module_name(path)
        own = layer_of(importer)
        for line, target in imported_modules(path):
            where = f'{path.relative_to(ROOT)}:{line}'
            top = target.split('.')[0]
            if top in FORBIDDEN and not importer.startswith('tests'):
                found.append(f'{where}: imports {target} ({FORBIDDEN[top]})')
            theirs = layer_of(target)
            if own is None or theirs is None or top != 'vlkit':
                continue
            if theirs[0] > own[0]:
                found.append(
                    f'{where}: {importer} (layer {own[0] + 1}) imports {target} (layer {theirs[0] + 1})'
                )
            elif _independent(importer, target):
                found.append(
                    f'{where}: {importer} imports {target}; they are independent siblings of layer 3'
                )
    return found


def source_files() -> list[Path]:
    folders = ('vlkit', 'connectors', 'tools', 'benchmarks')
    return sorted(p for folder in folders for p in (ROOT / folder).rglob('*.py'))


def test_every_module_has_a_layer():
    unplaced = [module_name(p) for p in source_files() if layer_of(module_name(p)) is None]
    assert not unplaced, f'modules outside every layer of LAYERS: {unplaced}'


def test_no_lower_layer_imports_a_higher_one():
    assert not violations(source_files()), '\n'.join(violations(source_files()))


def test_the_check_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The checker itself: a data module importing the models inside a function, an ops module importing
    the engine relatively, and an import from tests, are each reported."""
    fake = tmp_path / 'vlkit'
    (fake / 'data').mkdir(parents=True)
    (fake / 'ops').mkdir()
    (fake / 'data' / 'bad.py').write_text('def f():\n    from ..models import vlm\n')
    (fake / 'ops' / 'bad.py').write_text('from ..engine import runner\nimport tests.helpers\n')
    monkeypatch.setattr(f'{__name__}.ROOT', tmp_path)
    found = violations(sorted(fake.rglob('*.py')))
    assert any(
        'vlkit/data/bad.py:2: vlkit.data.bad imports vlkit.models.vlm; they are independent' in f
        for f in found
    )
    assert any('vlkit.ops.bad (layer 2) imports vlkit.engine.runner (layer 5)' in f for f in found)
    assert any('imports tests.helpers (code outside tests/' in f for f in found)
