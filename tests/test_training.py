"""train='frozen' | 'full' | 'lora' for every part (vlkit.models.training): which weights train, which
receive gradients, eval mode, the earlier freeze_vision_encoder, and LoRA merged back into plain weights."""

from __future__ import annotations

import pytest
import torch
from mmengine.config import Config

from vlkit.config_check import ConfigError, check_config
from vlkit.models.training import TRAIN_MODES, has_lora, merge_lora
from vlkit.registry import CONNECTORS, LANGUAGE_MODELS, MODELS, VISION_ENCODERS
from vlkit.testing import (
    TEXTS,
    TINY_CONNECTORS,
    TINY_ENCODERS,
    text_batch,
    tiny_language_model,
    tiny_model_cfg,
)

PARTS = {
    'vision_encoder': (VISION_ENCODERS, lambda name, root: dict(TINY_ENCODERS[name])),
    'connector': (CONNECTORS, lambda name, root: dict(type=name, **TINY_CONNECTORS[name])),
    'language_model': (LANGUAGE_MODELS, lambda name, root: tiny_language_model(root)),
}
CASES = [(part, name) for part, (registry, _) in PARTS.items() for name in sorted(registry.module_dict)]


def _build(root: str, seed: int = 0, **parts) -> torch.nn.Module:
    cfg = tiny_model_cfg(root)
    for part, changes in parts.items():  # a dict with a type replaces the part, others change it
        cfg[part] = dict(changes) if 'type' in changes else {**cfg[part], **changes}
    torch.manual_seed(seed)
    return MODELS.build(cfg)


def _trainable(module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize('part, name', CASES)
@pytest.mark.parametrize('mode', TRAIN_MODES)
def test_every_registered_part_takes_every_train_mode(part, name, mode, synthetic_root):
    config = PARTS[part][1](name, synthetic_root)
    lora = dict(lora=dict(r=2, lora_alpha=4)) if mode == 'lora' else {}
    model = _build(synthetic_root, **{part: {**config, 'train': mode, **lora}})
    module = getattr(model, part)
    names = {n for n, _ in module.named_parameters()}
    expected = {'frozen': set(), 'full': names, 'lora': {n for n in names if 'lora_' in n}}[mode]
    assert _trainable(module) == expected
    assert (mode == 'lora') == has_lora(module) and (mode != 'lora' or expected)

    model.train()
    loss = model(**text_batch(model, TEXTS), mode='loss')['loss']
    loss.backward()
    got_grad = {n for n, p in module.named_parameters() if p.grad is not None}
    assert got_grad <= expected, f'{part} ({name}, {mode}): frozen weights got {sorted(got_grad - expected)}'
    assert bool(got_grad) is bool(expected)  # (timm's unused fc_norm gets none in full mode)
    frozen_in_eval = part != 'language_model' and mode == 'frozen'
    assert module.training is not frozen_in_eval


def test_the_defaults_are_those_of_every_existing_config(synthetic_root):
    model = _build(synthetic_root).train()
    assert not _trainable(model.vision_encoder) and not model.vision_encoder.training
    assert _trainable(model.connector) == {n for n, _ in model.connector.named_parameters()}
    assert _trainable(model.language_model) == {n for n, _ in model.language_model.named_parameters()}
    assert {part: s.train for part, s in model.part_training.items()} == dict(
        vision_encoder='frozen', connector='full', language_model='full'
    )


def test_a_frozen_language_model_keeps_the_models_mode(synthetic_root):
    # Hugging Face checkpoints activations only in training mode, and stage 1 backpropagates through it
    model = _build(synthetic_root, language_model=dict(train='frozen')).train()
    assert model.language_model.training and not _trainable(model.language_model)


@pytest.mark.parametrize('freeze, train', [(True, 'frozen'), (False, 'full')])
def test_freeze_vision_encoder_still_works_and_says_what_to_write(freeze, train, synthetic_root):
    cfg = {**tiny_model_cfg(synthetic_root), 'freeze_vision_encoder': freeze}
    with pytest.warns(FutureWarning, match=rf"vision_encoder = dict\(\.\.\., train='{train}'\)"):
        model = MODELS.build(cfg)
    assert model.part_training['vision_encoder'].train == train
    assert bool(_trainable(model.vision_encoder)) is (not freeze)


def test_freeze_vision_encoder_contradicting_train_is_refused(synthetic_root):
    cfg = tiny_model_cfg(synthetic_root)
    cfg.update(freeze_vision_encoder=True, vision_encoder={**cfg['vision_encoder'], 'train': 'full'})
    with pytest.raises(ValueError, match="contradicts vision_encoder.train='full'"):
        MODELS.build(cfg)


@pytest.mark.parametrize(
    'changes, message',
    [
        (dict(connector=dict(train='lroa')), r"connector.train must be one of \('frozen', 'full', 'lora'\)"),
        (dict(vision_encoder=dict(lora=dict(r=2))), 'vision_encoder.lora is set but vision_encoder.train='),
    ],
)
def test_a_bad_setting_is_refused_naming_the_key(changes, message, synthetic_root):
    with pytest.raises(ValueError, match=message):
        _build(synthetic_root, **changes)
    cfg = Config(dict(model=tiny_model_cfg(synthetic_root)))
    for part, change in changes.items():
        cfg.model[part].update(change)
    with pytest.raises(ConfigError, match=f'<config>: {message}'):
        check_config(cfg)


def test_config_check_takes_train_and_lora_of_every_part(synthetic_root):
    cfg = Config(dict(model=tiny_model_cfg(synthetic_root)))
    cfg.model.connector.train = 'frozen'
    cfg.model.vision_encoder.update(train='lora', lora=dict(r=4))
    assert check_config(cfg) is cfg


def test_merged_lora_computes_what_the_adapters_did_with_plain_weights(synthetic_root):
    lora = dict(train='lora', lora=dict(r=2, lora_alpha=8))
    model = _build(synthetic_root, vision_encoder=lora, language_model=lora).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'lora_B' in name:  # zero at initialisation: give the adapters something to merge
                param.normal_(0, 0.1)
    batch = text_batch(model, TEXTS)
    q_proj = model.language_model.model.model.layers[0].self_attn.q_proj
    base = q_proj.base_layer.weight.clone()
    with torch.no_grad():
        before = model(**batch, mode='tensor')
        for part in ('vision_encoder', 'language_model'):
            merge_lora(getattr(model, part))
        after = model(**batch, mode='tensor')
    plain = _build(synthetic_root)
    assert model.state_dict().keys() == plain.state_dict().keys()
    assert not has_lora(model)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)
    merged = model.language_model.model.model.layers[0].self_attn.q_proj
    assert type(merged) is torch.nn.Linear and not torch.equal(merged.weight, base)
