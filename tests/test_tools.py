"""tools/train.py, tools/test.py, tools/print_config.py and every config in configs/, on tiny models."""

import glob
import json
import os
from pathlib import Path

import pytest

from tests.helpers import run_tool
from vlkit.config import load_config
from vlkit.engine import load_checkpoint_file
from vlkit.registry import MODELS
from vlkit.testing import tiny_options, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in glob.glob(str(ROOT / 'configs' / '*.py')))


def _run(tool, *args):
    result = run_tool(tool, *args)
    return result.stdout + result.stderr


def _scalars(work_dir):
    (path,) = glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json'))
    return [json.loads(line) for line in open(path)]


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: Path(p).name)
def test_every_config_builds(config, synthetic_root):
    cfg = load_config(config, tiny_options(synthetic_root, 2))
    model = MODELS.build(cfg.model)
    assert model.connector.out_dim == model.language_model.hidden_size


@pytest.mark.slow
def test_train_writes_logs_and_checkpoints_then_resumes(synthetic_root, tmp_path):
    work_dir = str(tmp_path / 'run')
    out = _run('train.py', 'configs/llava_mlp.py', *tiny_overrides(synthetic_root, work_dir, 20))
    assert 'validation accuracy (%)' in out and 'overall' in out
    assert os.path.isfile(os.path.join(work_dir, 'iter_20.pth'))
    assert glob.glob(os.path.join(work_dir, '*', 'vis_data', 'events.out.tfevents.*'))
    losses = [s['loss'] for s in _scalars(work_dir) if 'loss' in s]
    assert losses[-1] < losses[0]
    assert json.load(open(os.path.join(work_dir, 'val_accuracy.json')))['iter'] == 20

    opts = tiny_overrides(synthetic_root, work_dir, 30)
    out = _run('train.py', 'configs/llava_mlp.py', '--resume', *opts)
    assert 'resumed' in out.lower() and 'Iter(train) [30/30]' in out
    ckpt = load_checkpoint_file(os.path.join(work_dir, 'iter_30.pth'))
    assert ckpt['meta']['iter'] == 30


@pytest.mark.slow
def test_test_tool_compares_real_and_blank_images(synthetic_root, tmp_path):
    work_dir = str(tmp_path / 'run')
    opts = tiny_overrides(synthetic_root, work_dir, 5)
    _run('train.py', 'configs/llava_linear.py', *opts)
    out = _run(
        'test.py', 'configs/llava_linear.py', 'last', '--compare-blank', '--work-dir', work_dir, *opts[2:]
    )
    result = json.load(open(os.path.join(work_dir, 'accuracy_val.json')))
    assert set(result) >= {'images', 'blank images', 'gain', 'question only'}
    assert 'question only' in out and 'blank images' in out
    assert set(result['gain']) == set(result['images']) == set(result['blank images'])
    for key, gain in result['gain'].items():  # the gain is images minus blank images, task by task
        assert gain == pytest.approx(result['images'][key] - result['blank images'][key])


@pytest.mark.slow
def test_test_tool_names_a_missing_checkpoint(synthetic_root, tmp_path):
    result = run_tool('test.py', 'configs/llava_mlp.py', str(tmp_path / 'nope.pth'), check=False)
    assert result.returncode != 0 and 'nope.pth' in result.stderr and 'does not exist' in result.stderr


@pytest.mark.slow
def test_print_config_shows_the_assembled_model(synthetic_root):
    out = _run('print_config.py', 'configs/blip3_perceiver.py')
    assert "type='VisionLanguageModel'" in out and "type='PerceiverResampler'" in out
    assert f"data_root='{synthetic_root}'" in out
