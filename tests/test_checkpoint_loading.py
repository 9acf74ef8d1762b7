"""Loading checkpoints: weights-only always, whole unless declared partial (load_parts), and nothing
changed for the rest of the process (docs/architecture.md, "Checkpoints")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT, malicious_checkpoint, run_tool
from vlkit.engine import CheckpointLoadError, load_checkpoint_file
from vlkit.engine.checkpoint import check_state_dict, load_parts, mmengine_checkpoint_types
from vlkit.registry import MODELS
from vlkit.testing import tiny_model_cfg, tiny_overrides


def _malicious(tmp_path) -> tuple[str, str]:
    marker = str(tmp_path / 'ran')
    return malicious_checkpoint(tmp_path / 'model.pth', marker), marker


def test_a_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path):
    path, marker = _malicious(tmp_path)
    with pytest.raises(CheckpointLoadError, match=r'refused to load .*model.pth.*weights_only=True'):
        load_checkpoint_file(path)
    assert not os.path.exists(marker)


@pytest.mark.slow
@pytest.mark.parametrize('tool', ['test.py', 'load_from'])
def test_the_tools_refuse_it_too(tool, synthetic_root, tmp_path):
    path, marker = _malicious(tmp_path)
    opts = tiny_overrides(synthetic_root, str(tmp_path / 'run'), 2)
    if tool == 'test.py':
        result = run_tool('test.py', 'configs/llava_linear.py', path, *opts, check=False)
    else:
        result = run_tool('train.py', 'configs/llava_linear.py', *opts, f'load_from={path}', check=False)
    assert result.returncode != 0 and 'refused to load' in result.stderr and path in result.stderr
    assert not os.path.exists(marker), 'the checkpoint ran its command'


@pytest.mark.slow
def test_a_checkpoint_without_the_models_weights_is_refused_naming_them(synthetic_root, tmp_path):
    empty = str(tmp_path / 'empty.pth')
    torch.save({'state_dict': {}, 'meta': {}}, empty)
    opts = tiny_overrides(synthetic_root, str(tmp_path / 'run'), 2)
    result = run_tool('test.py', 'configs/llava_linear.py', empty, *opts, check=False)
    assert result.returncode != 0
    assert 'lacks weights the model needs' in result.stderr and 'connector.* 2' in result.stderr
    assert 'load_parts' in result.stderr  # how to load only some parts instead


def test_the_state_dict_check_names_missing_unexpected_and_mismatched_keys():
    model = {'a': torch.zeros(2), 'b': torch.zeros(3), 'c': torch.zeros(1)}
    found = {'a': torch.zeros(2), 'b': torch.zeros(4), 'z': torch.zeros(1)}
    with pytest.raises(CheckpointLoadError) as err:
        check_state_dict(model, found, 'x.pth')
    message = str(err.value)
    assert "lacks weights the model needs (1: c.* 1; first ['c'])" in message
    assert "no place for (1: z.* 1; first ['z'])" in message and 'b (4,) (model: (3,))' in message
    check_state_dict(model, dict(model), 'x.pth')  # an exact match passes


def test_load_parts_loads_each_part_from_a_checkpoint_or_a_part_file(synthetic_root, tmp_path):
    torch.manual_seed(0)
    source = MODELS.build(tiny_model_cfg(synthetic_root))
    torch.manual_seed(1)
    target = MODELS.build(tiny_model_cfg(synthetic_root))
    whole = str(tmp_path / 'stage1.pth')
    torch.save({'state_dict': source.state_dict(), 'meta': {}}, whole)
    load_parts(target, {'connector': whole})
    for key, value in source.connector.state_dict().items():
        assert torch.equal(target.connector.state_dict()[key], value)
    assert not torch.equal(
        target.language_model.embed(torch.tensor([1])), source.language_model.embed(torch.tensor([1]))
    )

    from safetensors.torch import save_file

    part = str(tmp_path / 'connector.safetensors')
    save_file({k: v.contiguous() for k, v in source.connector.state_dict().items()}, part)
    torch.manual_seed(2)
    other = MODELS.build(tiny_model_cfg(synthetic_root))
    load_parts(other, {'connector': part})
    assert torch.equal(other.connector.net[0].weight, source.connector.net[0].weight)

    wrong = MODELS.build(tiny_model_cfg(synthetic_root, connector=dict(type='MLPProjector', depth=3)))
    with pytest.raises(
        CheckpointLoadError, match=r'load_parts.connector=.*lacks weights the model needs.*net.4'
    ):
        load_parts(wrong, {'connector': whole})
    with pytest.raises(CheckpointLoadError, match=r"no part 'conector'; its parts: \['vision_encoder'"):
        load_parts(target, {'conector': whole})


def test_mmengine_types_are_allowed_only_inside_the_call():
    from mmengine.logging.history_buffer import HistoryBuffer

    before = set(torch.serialization.get_safe_globals())  # a set in torch: its order may change on restore
    with mmengine_checkpoint_types():
        assert HistoryBuffer in torch.serialization.get_safe_globals()
    assert set(torch.serialization.get_safe_globals()) == before


def test_importing_vlkit_leaves_mmengines_checkpoint_loaders_alone():
    code = (
        'from mmengine.runner.checkpoint import CheckpointLoader\n'
        'before = dict(CheckpointLoader._schemes)\n'
        'import vlkit.models, vlkit.engine, vlkit.config, vlkit.config_check, vlkit.analysis, vlkit.data\n'
        'import vlkit.evaluation, vlkit.connectors\n'
        'assert dict(CheckpointLoader._schemes) == before, CheckpointLoader._schemes\n'
        'import numpy, torch\n'
        'from mmengine.logging.history_buffer import HistoryBuffer\n'
        'allowed = torch.serialization.get_safe_globals()\n'
        'assert HistoryBuffer not in allowed and numpy.ndarray not in allowed, allowed\n'
        "print('unchanged')\n"
    )
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and 'unchanged' in result.stdout, result.stderr[-2000:]
