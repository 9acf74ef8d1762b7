"""vlkit.config.load_config: the model assembled from top-level parts, both option spellings, shared settings
filled only where a component declares them, and earlier spellings accepted with a message."""

from __future__ import annotations

import pytest

from tests.helpers import ROOT
from vlkit.config import load_config
from vlkit.models import DEFAULT_FUSION

CONFIG = str(ROOT / 'configs' / 'blip3_perceiver.py')


@pytest.mark.parametrize(
    'options',
    [
        ({'model.connector.num_latents': 16}, {'connector.num_latents': 16}),
        ({'model.image_size': 32}, {'image_size': 32}),
        ({'model.max_new_tokens': 3}, {'model_settings.max_new_tokens': 3}),
    ],
    ids=['part', 'shared setting', 'model setting'],
)
def test_both_spellings_of_an_option_give_the_same_config(options):
    as_shown, top_level = (load_config(CONFIG, o) for o in options)
    assert as_shown.pretty_text == top_level.pretty_text
    assert as_shown.model.connector.num_latents == (16 if 'connector' in str(options) else 32)


def test_a_model_setting_reaches_the_model_and_the_image_size_the_data():
    cfg = load_config(CONFIG, {'model.image_size': 32, 'model.max_new_tokens': 3})
    assert cfg.model.max_new_tokens == 3 and cfg.model.image_size == 32
    assert cfg.train_dataloader.dataset.image_size == 32 == cfg.val_dataloader.dataset.image_size


def test_shared_settings_fill_only_what_a_component_declares(tmp_path):
    config = tmp_path / 'exp.py'
    config.write_text(
        f'_base_ = [{CONFIG!r}]\n'
        'connector = dict(_delete_=True, type="LinearProjector")\n'
        'custom_hooks = [dict(type="AccuracyTableHook"), dict(type="EMAHook", momentum=None)]\n'
    )
    cfg = load_config(str(config))
    dataset = cfg.train_dataloader.dataset
    assert dataset.data_root == cfg.data_root and dataset.image_size == 64
    assert (
        dataset.tokenizer
        == cfg.model.language_model.tokenizer
        == dict(type='synthetic_tokenizer', data_root=cfg.data_root)
    )
    assert cfg.custom_hooks[1].momentum is None  # a None that no declared setting names stays None


def test_a_config_without_a_fusion_gets_the_default_one(tmp_path):
    config = tmp_path / 'exp.py'
    config.write_text(f'_base_ = [{CONFIG!r}]\nfusion = None\n')
    assert load_config(str(config)).model.fusion == dict(type=DEFAULT_FUSION)


def test_the_encoder_pretraining_of_earlier_versions_is_moved_with_a_message(tmp_path):
    config = tmp_path / 'old.py'
    config.write_text(
        f'_base_ = [{CONFIG!r}]\nencoder_pretraining = None\n'
        'vision_encoder = dict(pretrain=dict(data_root=None, image_size=None, iters=7, batch_size=8))\n'
    )
    with pytest.warns(
        FutureWarning, match='vision_encoder.pretrain is now a stage of its own; write encoder_pretr'
    ):
        cfg = load_config(str(config))
    assert 'pretrain' not in cfg.model.vision_encoder
    assert cfg.encoder_pretraining == dict(iters=7, batch_size=8)
    with pytest.warns(FutureWarning):
        assert load_config(str(config), {'vision_encoder.pretrain': None}).encoder_pretraining is None


def test_custom_imports_of_the_old_connectors_package_are_renamed_with_a_message(tmp_path):
    config = tmp_path / 'old.py'
    config.write_text(
        f'_base_ = [{CONFIG!r}]\n'
        'custom_imports = dict(imports=["connectors.perceiver"], allow_failed_imports=False)\n'
    )
    with pytest.warns(FutureWarning, match="'connectors' is now 'vlkit.connectors'"):
        cfg = load_config(str(config))
    assert cfg.custom_imports.imports == ['vlkit.connectors.perceiver']
