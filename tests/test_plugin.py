"""docs/adding_a_connector.md, step by step: a connector in a project outside vlkit, registered by its own
config's ``custom_imports``, trained and evaluated with vlkit's tools.

The project's files are the page's own code blocks (those whose first line is ``# my_project/NAME``), so
the page cannot drift from what is tested.
"""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import run_tool
from vlkit.config import load_config
from vlkit.engine import load_checkpoint_file
from vlkit.registry import CONNECTORS
from vlkit.testing import tiny_options, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / 'docs' / 'adding_a_connector.md'
PLUGIN, MODULE = 'TokenMerger', 'token_merger'
CONFIG, PRESETS = 'token_merger_config.py', 'token_merger_presets.py'


def _project_files() -> dict[str, str]:
    """``{file name: text}`` for every python block of the page that starts with ``# my_project/NAME``."""
    blocks = re.findall(r'```python\n(.*?)```', DOC.read_text(), flags=re.DOTALL)
    files = {}
    for block in blocks:
        first, _, rest = block.partition('\n')
        if first.startswith('# my_project/'):
            files[first.removeprefix('# my_project/')] = rest
    return files


@pytest.fixture
def project(tmp_path) -> Path:
    """The page's layout: ``my_project/`` with its two files, beside a ``vlkit/`` checkout (this one)."""
    files = _project_files()
    assert set(files) == {f'{MODULE}.py', CONFIG, PRESETS}, f'{DOC.name} code blocks: {sorted(files)}'
    project = tmp_path / 'my_project'
    project.mkdir()
    for name, text in files.items():
        (project / name).write_text(text)
    (tmp_path / 'vlkit').symlink_to(ROOT, target_is_directory=True)
    return project


@pytest.fixture
def registered(project, monkeypatch):
    """The plug-in registered in this process the way a tool does it: by loading the config."""
    monkeypatch.syspath_prepend(str(project))
    cfg = load_config(str(project / CONFIG))
    try:
        yield cfg
    finally:
        CONNECTORS.module_dict.pop(PLUGIN, None)
        sys.modules.pop(MODULE, None)


def _tool(project: Path, tool: str, *args: str) -> str:
    """Runs ``PYTHONPATH=../my_project python tools/TOOL ARGS`` from vlkit's root, as the page does."""
    result = run_tool(tool, *args, pythonpath=[str(project)])
    return result.stdout + result.stderr


def test_the_config_names_the_plugin_and_vlkit_bases(registered):
    assert registered.model.connector == dict(type=PLUGIN, factor=2, depth=2)
    # from vlkit's _base_, by a path relative to the config
    assert registered.model.vision_encoder.type == 'TimmVisionEncoder'
    assert CONNECTORS.get(PLUGIN).__module__ == MODULE


@pytest.mark.slow
def test_an_uncovered_plugin_fails_the_contract_coverage_then_passes_the_contract(project):
    # the page's step 6: pytest with the plug-in imported, then with its presets too
    tests = ['tests/test_connectors.py', '-p', 'no:cacheprovider', '-p', MODULE]
    uncovered = run_tool('-m pytest', *tests, check=False, pythonpath=[str(project)])
    assert uncovered.returncode == 1 and 'test_every_connector_is_covered' in uncovered.stdout
    assert PLUGIN in uncovered.stdout
    covered = run_tool(
        '-m pytest', *tests, '-v', '-p', PRESETS.removesuffix('.py'), pythonpath=[str(project)]
    )
    assert f'test_connector_contract[{PLUGIN}] PASSED' in covered.stdout
    assert f'test_connector_ignores_masked_tokens[{PLUGIN}] PASSED' in covered.stdout
    assert 'failed' not in covered.stdout


@pytest.mark.slow
def test_the_plugin_trains_and_is_evaluated_with_vlkit_tools(project, synthetic_root):
    work_dir = project.parent / 'work_dir'
    config = str(project / CONFIG)
    opts = tiny_overrides(synthetic_root, str(work_dir), 10)
    _tool(project, 'train.py', config, *opts)

    state = load_checkpoint_file(str(work_dir / 'iter_10.pth'))['state_dict']
    assert {'connector.merge_weights', 'connector.net.0.weight', 'connector.net.2.weight'} <= set(state)
    assert not torch.allclose(state['connector.merge_weights'], torch.full((4,), 0.25)), 'it did not train'
    (scalars,) = work_dir.glob('*/vis_data/scalars.json')
    losses = [s['loss'] for s in map(json.loads, scalars.read_text().splitlines()) if 'loss' in s]
    assert len(losses) >= 2 and all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < losses[0]

    out = _tool(project, 'test.py', config, 'last', '--compare-blank', *opts)
    assert 'blank images' in out
    result = json.loads((work_dir / 'accuracy_val.json').read_text())
    assert result['checkpoint'].endswith('iter_10.pth') and set(result) >= {'images', 'blank images', 'gain'}


@pytest.mark.slow
def test_the_plugin_sits_beside_a_builtin_connector_in_a_comparison(project, synthetic_root):
    out = project.parent / 'compare'
    opts = [f'{k}={v}' for k, v in tiny_options(synthetic_root, 2).items()]
    configs = [str(project / CONFIG), 'configs/idefics3_pixel_shuffle.py']
    # profile-only: the training and the evaluation of the plugin through the tools are the test above's
    _tool(project, 'compare.py', *configs, '--profile-only', '--out', str(out), '--cfg-options', *opts)
    report = (out / 'report.md').read_text()
    rows = {line.split('|')[1].strip() for line in report.splitlines() if line.startswith('| ')}
    assert {'token_merger_config', 'idefics3_pixel_shuffle'} <= rows, report[:2000]
    assert PLUGIN in report and (out / 'report.html').is_file()
