"""The vision-encoder contract (docs/architecture.md, "VisionEncoder") for every registered encoder, and what
each wrapper adds (prefix tokens dropped, hidden layer chosen, local directories).

An encoder that is registered but has no entry in vlkit.testing.TINY_ENCODERS fails
``test_every_encoder_is_covered``.
"""

import pytest
import torch

from vlkit.registry import VISION_ENCODERS
from vlkit.testing import TINY_ENCODERS, TINY_IMAGE_SIZE, tiny_encoder


def _names():
    VISION_ENCODERS.import_from_location()
    return sorted(VISION_ENCODERS.module_dict)


def test_every_encoder_is_covered():
    missing = set(_names()) - set(TINY_ENCODERS)
    assert not missing, (
        f'registered encoders without contract-test settings (add them to TINY_ENCODERS): {missing}'
    )


@pytest.mark.parametrize('name', _names())
def test_encoder_contract_and_declared_facts(name):
    cfg = TINY_ENCODERS[name]
    cls = VISION_ENCODERS.get(name)
    enc = VISION_ENCODERS.build(cfg)
    images = torch.randn(2, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    feats = enc(images)
    h, w = enc.grid_size(TINY_IMAGE_SIZE)
    assert feats.grid == (h, w) and feats.tokens.shape == (2, h * w, enc.out_dim) == (
        2,
        enc.num_tokens(32),
        enc.out_dim,
    )
    assert feats.tokens.isfinite().all()
    # what the class says of the config, before building, is what the built encoder does
    assert cls.declared_width(cfg) in (None, enc.out_dim)
    assert cls.declared_input_size(cfg) in (None, TINY_IMAGE_SIZE)
    assert cls.declared_width(cfg) is not None, f'{name} declares no width for its tiny config'
    # and its weight-free config builds the same architecture
    bare = VISION_ENCODERS.build(cls.without_weights(cfg))
    assert {k: v.shape for k, v in bare.state_dict().items()} == {
        k: v.shape for k, v in enc.state_dict().items()
    }
    feats.tokens.square().mean().backward()  # trainable end to end (a pooling head may stay unused)
    first = next(p for p in enc.parameters() if p.requires_grad)  # the patch embedding
    assert first.grad is not None and first.grad.any()


def test_timm_encoder_drops_prefix_tokens_and_reports_its_grid():
    cfg = tiny_encoder()
    cfg['model_kwargs'] = dict(
        cfg['model_kwargs'], class_token=True, global_pool='token', dynamic_img_size=True
    )
    enc = VISION_ENCODERS.build(cfg)
    feats = enc(torch.randn(2, 3, 32, 48))
    assert enc.model.num_prefix_tokens == 1
    assert feats.grid == (4, 6) and feats.tokens.shape == (2, 24, enc.out_dim)
    assert enc.num_tokens((32, 48)) == 24


def test_timm_convnet_features_become_tokens():
    enc = VISION_ENCODERS.build(dict(type='TimmVisionEncoder', model_name='resnet18', model_kwargs=dict()))
    feats = enc(torch.randn(1, 3, 64, 96))
    assert feats.grid == (2, 3) and feats.tokens.shape == (1, 6, 512) == (
        1,
        enc.num_tokens((64, 96)),
        enc.out_dim,
    )


@pytest.mark.parametrize('model_type,prefix', [('siglip_vision_model', 0), ('clip_vision_model', 1)])
def test_hf_encoder_from_config_dict(model_type, prefix):
    cfg = dict(
        model_type=model_type,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    enc = VISION_ENCODERS.build(dict(type='HFVisionEncoder', model=cfg, layer=-2))
    feats = enc(torch.randn(2, 3, 32, 32))
    assert feats.grid == (4, 4) and feats.tokens.shape == (2, 16, 32)
    hidden = enc.model(pixel_values=torch.randn(1, 3, 32, 32), output_hidden_states=True).hidden_states[-2]
    assert hidden.shape[1] == 16 + prefix  # the wrapper dropped exactly the CLS token, if any


def test_hf_encoder_from_local_directory(tmp_path):
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.for_model(
        'siglip_vision_model',
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    AutoModel.from_config(cfg).save_pretrained(tmp_path / 'siglip')
    enc = VISION_ENCODERS.build(dict(type='HFVisionEncoder', model=str(tmp_path / 'siglip')))
    assert enc(torch.randn(1, 3, 32, 32)).tokens.shape == (1, 16, 32)
