"""Bad configs are refused before anything is built, naming the key, the file and what was expected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_options, tiny_overrides
from vlkit.config import load_config
from vlkit.config_check import ConfigError, check_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / 'configs' / 'blip3_perceiver.py')


def _check(synthetic_root: str, config: str = CONFIG, **options) -> None:
    check_config(load_config(config, {**tiny_options(synthetic_root, 2), **options}))


def _refused(synthetic_root: str, config: str = CONFIG, **options) -> str:
    with pytest.raises(ConfigError) as err:
        _check(synthetic_root, config, **options)
    message = str(err.value)
    assert message.startswith(f'{config}: ')
    return message


def test_every_shipped_config_passes(synthetic_root):
    for config in sorted((ROOT / 'configs').glob('*.py')):
        _check(synthetic_root, str(config))


def test_unknown_type_lists_the_registered_ones_and_the_closest(synthetic_root):
    message = _refused(synthetic_root, **{'connector.type': 'PerceiverResampller'})
    assert "model.connector.type='PerceiverResampller' is not a registered connector" in message
    assert "'MLPProjector'" in message and "Did you mean 'PerceiverResampler'?" in message
    assert 'VisionLanguageModel' not in message  # only connectors are listed


def test_unknown_hook_type_is_named(synthetic_root):
    message = _refused(synthetic_root, **{'default_hooks.checkpoint.type': 'AtomicCheckpoint'})
    assert "default_hooks.checkpoint.type='AtomicCheckpoint'" in message
    assert "Did you mean 'AtomicCheckpointHook'?" in message


def test_unknown_top_level_key_is_named(synthetic_root):
    message = _refused(synthetic_root, optim_wraper={'lr': 1})
    assert (
        "unknown top-level key(s) ['optim_wraper']" in message and "Did you mean 'optim_wrapper'?" in message
    )


def test_unknown_argument_of_a_model_part_is_named(synthetic_root):
    message = _refused(synthetic_root, **{'connector.num_latent': 8})
    assert 'model.connector.num_latent is not an argument of PerceiverResampler' in message
    assert "Did you mean 'num_latents'?" in message


def test_unknown_argument_of_a_dataset_is_named(synthetic_root):
    message = _refused(synthetic_root, **{'train_dataloader.dataset.shuffle_bufer': 10})
    assert 'train_dataloader.dataset.shuffle_bufer is not an argument of SyntheticShards' in message
    assert "Did you mean 'shuffle_buffer'?" in message


@pytest.mark.parametrize(
    'options, named',
    [
        ({'connector.out_dim': 100}, 'connector.out_dim=100 does not match the LLM hidden size (48)'),
        ({'connector.in_dim': 100}, 'connector.in_dim=100 does not match the vision encoder width (32)'),
        ({'image_size': 64}, 'vision_encoder.model_kwargs.img_size=32 does not match image_size (64)'),
    ],
)
def test_declared_dimensions_that_disagree_are_named(options, named, synthetic_root):
    assert named in _refused(synthetic_root, **options)


def test_missing_data_is_named(synthetic_root, tmp_path):
    config = tmp_path / 'nowhere.py'
    config.write_text(
        f'_base_ = [{CONFIG!r}]\n'
        'train_dataloader = dict(dataset=dict(_delete_=True, type="ConversationShards", '
        f'shards="{tmp_path}/train-{{00000..00003}}.tar", tokenizer=None))\n'
    )
    message = _refused(synthetic_root, str(config))
    assert f"train_dataloader.dataset.shards: none of ['{tmp_path}/train-00000.tar'," in message


def test_missing_local_weights_are_named(synthetic_root, tmp_path):
    message = _refused(synthetic_root, **{'vision_encoder.checkpoint': str(tmp_path / 'vit.pth')})
    assert f"vision_encoder.checkpoint='{tmp_path / 'vit.pth'}' does not exist" in message


def test_the_train_tool_refuses_before_the_first_iteration(synthetic_root, tmp_path):
    args = [*tiny_overrides(synthetic_root, str(tmp_path / 'run'), 2), 'connector.num_latent=8']
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'train.py'), 'configs/blip3_perceiver.py', *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode != 0
    assert 'config error: configs/blip3_perceiver.py: model.connector.num_latent' in result.stderr
    assert 'Iter(train)' not in result.stdout + result.stderr and not (tmp_path / 'run').exists()
