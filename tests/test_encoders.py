import json

import pytest
import torch

from tests.conftest import tiny_encoder
from vlkit.models.encoders import pretrain as pretrain_module
from vlkit.registry import VISION_ENCODERS


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


def test_pretraining_runs_once_then_loads_from_cache(synthetic_root, monkeypatch):
    settings = dict(data_root=synthetic_root, image_size=32, iters=3, batch_size=4, bank_size=16)
    first = VISION_ENCODERS.build(dict(tiny_encoder(), pretrain=settings))
    cache_dir = pretrain_module.Path(synthetic_root) / 'encoders'
    (cached,) = cache_dir.glob('*.pth')
    report = json.loads(cached.with_suffix('.json').read_text())
    assert set(report['held_out_accuracy']) == {
        'colour',
        'shape',
        'word',
        'centre',
        'object',
        'place',
        'count',
        'tags',
    }

    def fail(*args, **kwargs):
        raise AssertionError('pretraining ran again although its result was cached')

    monkeypatch.setattr(pretrain_module, '_pretrain', fail)
    second = VISION_ENCODERS.build(dict(tiny_encoder(), pretrain=settings))
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert len(list(cache_dir.glob('*.pth'))) == 1


def test_pretraining_improves_the_dense_targets(synthetic_root):
    enc = VISION_ENCODERS.build(tiny_encoder())
    torch.manual_seed(0)
    acc = pretrain_module._pretrain(enc, 32, iters=150, batch_size=32, lr=3e-3, bank_size=256, seed=0)
    assert acc['colour'] > 85 and acc['count'] > 40  # background alone is ~80% of patches; chance count 25%
