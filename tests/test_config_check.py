"""Bad configs are refused before anything is built, naming the key, the file and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_tool
from vlkit.config import load_config
from vlkit.config_check import ConfigError, check_config
from vlkit.models.fusion import AutoregressiveFusion
from vlkit.registry import FUSIONS
from vlkit.testing import tiny_options, tiny_overrides

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


def test_every_shipped_config_passes(synthetic_root, tmp_path):
    prepared = tmp_path / 'prepared'  # what tools/prepare_data.py leaves, for configs on real data
    prepared.mkdir()
    (prepared / 'manifest.json').write_text('{"splits": {}}')
    for config in sorted((ROOT / 'configs').glob('*.py')):
        cfg = load_config(str(config))
        options = {
            f'{split}_dataloader.dataset.data_dir': str(prepared)
            for split in ('train', 'val', 'test')
            if 'data_dir' in ((cfg.get(f'{split}_dataloader') or {}).get('dataset') or {})
        }
        _check(synthetic_root, str(config), **options)


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
        ({'image_size': 64}, 'vision_encoder (TimmVisionEncoder) takes 32 px images, but image_size=64'),
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


@pytest.mark.parametrize('splices', [True, False])
def test_a_new_fusion_gets_out_dim_checked_by_what_it_declares(splices, synthetic_root):
    """A fusion registered here, never named in config_check: only one that splices visual tokens into the
    language model's input needs the connector's out_dim to be the LLM's hidden size."""

    class DeclaredFusion(AutoregressiveFusion):
        splices_visual_tokens = splices

    name = f'DeclaredFusion{splices}'
    FUSIONS.register_module(name, module=DeclaredFusion)
    try:
        options = {'fusion.type': name, 'connector.out_dim': 100}
        if splices:
            assert 'connector.out_dim=100 does not match the LLM hidden size (48)' in _refused(
                synthetic_root, **options
            )
        else:
            _check(synthetic_root, **options)
    finally:
        FUSIONS.module_dict.pop(name)


def test_pretraining_stage_and_encoder_checkpoint_together_are_refused(synthetic_root, tmp_path):
    weights = tmp_path / 'vit.pth'
    weights.write_bytes(b'')
    options = {'encoder_pretraining': dict(iters=2), 'vision_encoder.checkpoint': str(weights)}
    message = _refused(synthetic_root, **options)
    assert 'encoder_pretraining and vision_encoder.checkpoint both set the encoder weights' in message


def test_llm_pretraining_and_a_pretrained_language_model_together_are_refused(synthetic_root, tmp_path):
    options = {'llm_pretraining': dict(iters=2), 'language_model.pretrained': str(tmp_path)}
    message = _refused(synthetic_root, **options)
    assert 'llm_pretraining and language_model.pretrained both set the language model weights' in message


@pytest.mark.slow
def test_the_train_tool_refuses_before_the_first_iteration(synthetic_root, tmp_path):
    args = [*tiny_overrides(synthetic_root, str(tmp_path / 'run'), 2), 'connector.num_latent=8']
    result = run_tool('train.py', 'configs/blip3_perceiver.py', *args, check=False)
    assert result.returncode != 0
    assert 'config error: configs/blip3_perceiver.py: model.connector.num_latent' in result.stderr
    assert 'Iter(train)' not in result.stdout + result.stderr and not (tmp_path / 'run').exists()


def test_few_shot_demonstrations_are_checked_as_a_dataset(synthetic_root):
    message = _refused(synthetic_root, few_shot_demonstrations=dict(type='SyntheticShard'))
    assert "few_shot_demonstrations.type='SyntheticShard' is not a registered" in message
    assert "Did you mean 'SyntheticShards'?" in message
