"""vlkit.analysis: parameter counts against the reference implementations, FLOPs against hand-derived
formulas, profile-only (meta) builds against real ones, and every paper-scale config profiled on this CPU."""

import glob
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from torch import nn

from benchmarks.references import (
    HoneybeeCAbstractor,
    llava_projector,
    open_flamingo_gated_block,
    open_flamingo_perceiver,
)
from vlkit.analysis import count_flops, count_parameters, make_batch, profile_config
from vlkit.analysis.memory import PeakMemory
from vlkit.config import load_config
from vlkit.ops import attention
from vlkit.registry import CONNECTORS
from vlkit.testing import tiny_model_cfg

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = {Path(p).stem: p for p in sorted(glob.glob(str(ROOT / 'configs' / 'paper' / '*.py')))}
PARTS = ('vision_encoder', 'connector', 'fusion', 'language_model')
MEASURED = (
    'memory/train_step_peak_bytes',
    'speed/train_samples_per_s',
    'speed/time_to_first_token_ms',
    'speed/decode_tokens_per_s',
)
KEYS = {
    'params/total', 'params/trainable', *(f'{k}/{p}' for k in ('params', 'trainable') for p in PARTS),
    'visual_tokens_per_image', 'flops/forward_per_sample', 'flops/train_step_per_sample', *MEASURED,
}  # fmt: skip
SIGLIP_WIDTH, SIGLIP_GRID, PHI3_WIDTH = 1152, (27, 27), 3072
PHI3_MINI_PARAMS = 3_821_079_552  # microsoft/Phi-3-mini-4k-instruct, untied embeddings and LM head


def _tiny_cfg(connector: dict | None = None, fusion: dict | None = None) -> Config:
    """A tiny VLM with the stand-in tokenizer (no synthetic data needed)."""
    model = tiny_model_cfg('unused', connector, fusion)
    model['language_model']['tokenizer'] = dict(type='vocab_size_tokenizer', vocab_size=64)
    return Config(dict(model=model))


# -- the FLOP counter's corrections ---------------------------------------------------------------------


def test_cpu_sdpa_is_counted_like_the_written_out_products():
    q, k, v = (torch.randn(2, 3, n, 8, requires_grad=True) for n in (5, 7, 7))
    products = 2 * (2 * 2 * 3 * 5 * 7 * 8)  # QK^T and AV, 2 FLOPs per multiply-accumulate
    assert count_flops(lambda: attention(q, k, v, backend='sdpa')) == products
    assert count_flops(lambda: attention(q, k, v, backend='math')) == products
    # backward: the gradients of both operands of both products, as the math path counts it
    assert count_flops(lambda: attention(q, k, v, backend='sdpa').sum().backward()) == 3 * products
    assert count_flops(lambda: attention(q, k, v, backend='math').sum().backward()) == 3 * products


@pytest.mark.parametrize('groups', [1, 4, 32])
def test_grouped_convolution_backward_is_twice_its_forward(groups):
    conv = nn.Conv2d(32, 32, 3, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 32, 6, 6, requires_grad=True)
    forward = count_flops(lambda: conv(x))
    assert forward == 2 * 2 * 36 * 9 * 32 * (32 // groups)
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward  # not (2 + groups) x


# -- hand-derived connector FLOPs (2 x MAC per sample) ---------------------------------------------------


def _linears(n: int, dims: list[int]) -> int:
    return sum(2 * n * a * b for a, b in zip(dims, dims[1:], strict=False))


def _mlp_flops(n, din, dout, *, depth=2, hidden_dim=None, act='gelu'):
    return _linears(n, [din] + [hidden_dim or dout] * (depth - 1) + [dout])


def _attention_flops(lq, lk, dim, kv_dim, num_heads, head_dim, context_space_allowed):
    """Multi-head attention of lq queries over lk keys: q, fused k/v and output projections, QK^T and AV.

    Given a raw context (not already projected keys and values), ``MultiheadAttention`` attends in the
    context's space instead (keys and values never projected: q is mapped through W_k, each head attends
    to the raw context, W_v follows) when that takes under 0.8 x the multiply-adds (BLIP-2's 32 queries
    over 729 wide tokens)."""
    inner = num_heads * head_dim
    projections = 2 * lq * dim * inner + 2 * lq * inner * dim  # q and out, in both forms
    projected = 2 * lk * kv_dim * 2 * inner + 2 * 2 * lq * lk * inner
    in_context = 2 * 2 * lq * inner * kv_dim + 2 * 2 * num_heads * lq * lk * kv_dim
    if context_space_allowed and in_context < 0.8 * projected:
        return projections + in_context
    return projections + projected


def _perceiver_flops(n, din, dout, *, num_latents, depth, num_heads, head_dim, mlp_ratio):
    # the latents attend to [media; latents], whose keys and values the layer projects itself
    m = num_latents
    attn = _attention_flops(m, n + m, din, din, num_heads, head_dim, context_space_allowed=False)
    layer = attn + _linears(m, [din, din * mlp_ratio, din])
    return depth * layer + (2 * m * din * dout if dout else 0)


def _qformer_flops(n, din, dout, *, num_queries, dim, depth, num_heads, mlp_dim, cross_attn_every):
    q = num_queries
    head_dim = dim // num_heads
    self_attn = _attention_flops(q, q, dim, dim, num_heads, head_dim, context_space_allowed=False)
    cross = _attention_flops(q, n, dim, din, num_heads, head_dim, context_space_allowed=True)
    ff = _linears(q, [dim, mlp_dim, dim])
    layers = sum(self_attn + ff + (cross if i % cross_attn_every == 0 else 0) for i in range(depth))
    return layers + 2 * q * dim * dout


def _reg_block_flops(positions, cin, c):
    """timm RegStage block with SE (Honeybee): 1x1 conv, depthwise 3x3, SE on the pooled vector, 1x1 conv,
    and a 1x1 conv shortcut when the width changes. A 3x3 kernel counts 9 taps at every position."""
    se = round(cin * 0.25)
    shortcut = 2 * positions * cin * c if cin != c else 0
    return (
        2 * positions * cin * c
        + 2 * positions * 9 * c
        + 2 * (c * se + se * c)
        + 2 * positions * c * c
        + shortcut
    )


def _c_abstractor_flops(grid, din, dout, *, num_tokens, depth, hidden_dim, mlp_depth):
    p = grid[0] * grid[1]
    stage1 = sum(_reg_block_flops(p, din if i == 0 else hidden_dim, hidden_dim) for i in range(depth))
    stage2 = depth * _reg_block_flops(num_tokens, hidden_dim, hidden_dim)
    return stage1 + stage2 + _linears(num_tokens, [hidden_dim] + [dout] * mlp_depth)


FORMULAS = {
    'MLPProjector': _mlp_flops,
    'PerceiverResampler': _perceiver_flops,
    'QFormer': _qformer_flops,
}

TINY_CONNECTORS = {  # (grid, in_dim, out_dim, hyper-parameters) run on real CPU tensors (CPU SDPA kernel)
    'MLPProjector': dict(depth=2),
    'PerceiverResampler': dict(num_latents=5, depth=2, num_heads=3, head_dim=8, mlp_ratio=2),
    'QFormer': dict(num_queries=4, dim=32, depth=3, num_heads=4, mlp_dim=48, cross_attn_every=2),
    'CAbstractor': dict(num_tokens=4, depth=2, hidden_dim=32, mlp_depth=2),
}


def _expected_flops(name, grid, din, dout, hp):
    n = grid[0] * grid[1]
    if name == 'CAbstractor':
        return _c_abstractor_flops(grid, din, dout, **hp)
    return FORMULAS[name](n, din, dout, **hp)


def _connector(name, din, dout, grid, hp):
    extra = dict(input_grid=grid) if name == 'CAbstractor' else {}
    return CONNECTORS.build(dict(type=name, in_dim=din, out_dim=dout, **extra, **hp))


@pytest.mark.parametrize('name', sorted(TINY_CONNECTORS))
def test_connector_flops_match_the_formula_and_backward_is_twice_forward(name):
    grid, din, dout, hp = (6, 6), 24, 40, TINY_CONNECTORS[name]
    connector = _connector(name, din, dout, grid, hp)
    x = torch.randn(1, 36, din, requires_grad=True)
    forward = count_flops(lambda: connector(x, None, grid))
    assert forward == pytest.approx(_expected_flops(name, grid, din, dout, hp), rel=0.01)
    # every counted product has two operand gradients: a training step costs 3 forward passes
    assert count_flops(lambda: connector(x, None, grid).sum().backward()) == 3 * forward


def _paper_connector(config: str) -> tuple[str, dict, int]:
    """The connector type, hyper-parameters and output width of a paper config."""
    cfg = load_config(PAPER_CONFIGS[config])
    hp = {k: v for k, v in cfg.connector.items() if k != 'type'}
    return cfg.connector.type, hp, PHI3_WIDTH


@pytest.mark.parametrize('config', sorted(PAPER_CONFIGS))
def test_paper_connector_flops_match_the_formula(config):
    name, hp, dout = _paper_connector(config)
    with torch.device('meta'):
        connector = _connector(name, SIGLIP_WIDTH, dout, SIGLIP_GRID, hp)
        x = torch.empty(1, SIGLIP_GRID[0] * SIGLIP_GRID[1], SIGLIP_WIDTH)
    counted = count_flops(lambda: connector(x, None, SIGLIP_GRID))
    assert counted == pytest.approx(_expected_flops(name, SIGLIP_GRID, SIGLIP_WIDTH, dout, hp), rel=0.01)


# -- parameter counts against the reference implementations (docs/architecture.md) -------------------


def _llava_mlp(hp):
    return llava_projector(SIGLIP_WIDTH, PHI3_WIDTH, hp['depth'])


def _blip2_qformer(hp):
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    cfg = Blip2QFormerConfig(
        hidden_size=hp['dim'],
        num_hidden_layers=hp['depth'],
        num_attention_heads=hp['num_heads'],
        intermediate_size=hp['mlp_dim'],
        cross_attention_frequency=hp['cross_attn_every'],
        encoder_hidden_size=SIGLIP_WIDTH,
    )
    query_tokens = nn.Parameter(torch.zeros(1, hp['num_queries'], hp['dim']))  # Blip2Model.query_tokens
    return nn.ModuleDict(
        dict(qformer=Blip2QFormerModel(cfg), language_projection=nn.Linear(hp['dim'], PHI3_WIDTH))
    ), query_tokens


def _perceiver_with_projection(hp):
    return open_flamingo_perceiver(SIGLIP_WIDTH, projection_dim=PHI3_WIDTH, **hp)


def _honeybee(hp):
    side = round(hp['num_tokens'] ** 0.5)
    return HoneybeeCAbstractor(
        SIGLIP_WIDTH, hp['hidden_dim'], PHI3_WIDTH, hp['depth'], hp['mlp_depth'], SIGLIP_GRID, side
    )


REFERENCES = {
    'MLPProjector': _llava_mlp,
    'QFormer': _blip2_qformer,
    'PerceiverResampler': _perceiver_with_projection,
    'CAbstractor': _honeybee,
}


def _numel(obj) -> int:
    if isinstance(obj, tuple):
        return sum(_numel(o) for o in obj)
    return obj.numel() if isinstance(obj, torch.Tensor) else sum(p.numel() for p in obj.parameters())


@pytest.fixture(scope='module')
def paper_profiles():
    """Profile-only figures of every paper config."""
    return {
        name: profile_config(load_config(path), profile_only=True) for name, path in PAPER_CONFIGS.items()
    }


def _profile(paper_profiles, config):
    return paper_profiles[config]


@pytest.mark.parametrize('config', sorted(PAPER_CONFIGS))
def test_paper_connector_parameters_equal_the_reference(paper_profiles, config):
    profile = _profile(paper_profiles, config)
    name, hp, _ = _paper_connector(config)
    with torch.device('meta'):
        reference = REFERENCES[name](hp)
    assert profile['params/connector'] == _numel(reference)


def test_flamingo_fusion_parameters_equal_open_flamingo_blocks(paper_profiles):
    profile = _profile(paper_profiles, 'flamingo_xattn')
    fusion = load_config(PAPER_CONFIGS['flamingo_xattn']).fusion
    with torch.device('meta'):
        block = open_flamingo_gated_block(PHI3_WIDTH, PHI3_WIDTH)  # 8 heads of 64, ff x4
    num_blocks = 32 // fusion.every
    assert profile['params/fusion'] == num_blocks * _numel(block)
    assert (
        profile['trainable/language_model'] == 0 and profile['trainable/fusion'] == profile['params/fusion']
    )


def test_profile_only_figures_of_every_paper_config(paper_profiles):
    profiles = paper_profiles
    tokens = {
        'blip3_perceiver': 128, 'blip2_qformer': 32, 'llava15_mlp': 729, 'honeybee_cabstractor': 144,
        'idefics2_perceiver': 64, 'flamingo_xattn': 64,
    }  # fmt: skip
    for config, profile in profiles.items():
        assert set(profile) == KEYS
        assert all(profile[k] is None for k in MEASURED)
        assert profile['visual_tokens_per_image'] == tokens[config]
        assert profile['params/language_model'] == PHI3_MINI_PARAMS
        assert sum(profile[f'params/{p}'] for p in PARTS) == profile['params/total']
        assert profile['flops/train_step_per_sample'] > profile['flops/forward_per_sample'] > 1e12


def test_paper_forward_flops_are_dominated_by_the_llm_over_its_sequence(paper_profiles):
    # a decoder's forward is ~2 FLOPs per weight per token; LLaVA-1.5 feeds Phi-3 729 + 65 tokens
    profile = _profile(paper_profiles, 'llava15_mlp')
    llm_matmuls = 2 * (PHI3_MINI_PARAMS - 32064 * PHI3_WIDTH) * (729 + 65)  # the input embedding is a lookup
    assert llm_matmuls < profile['flops/forward_per_sample'] < 1.2 * llm_matmuls


# -- tiny models: profile-only equals a real build -------------------------------------------------------


TINY_MODELS = {
    'mlp': (dict(type='MLPProjector'), None),
    'qformer': (dict(type='QFormer', num_queries=4, dim=32, depth=2, num_heads=2, mlp_dim=64), None),
    'c_abstractor': (dict(type='CAbstractor', num_tokens=4, depth=1, hidden_dim=32), None),
    'cross_attention': (
        dict(type='PerceiverResampler', num_latents=4, depth=1, num_heads=2, head_dim=8),
        dict(type='CrossAttentionFusion', every=1, num_heads=2, head_dim=8),
    ),
}


@pytest.mark.parametrize('name', sorted(TINY_MODELS))
def test_profile_only_equals_a_real_build(name):
    connector, fusion = TINY_MODELS[name]
    cfg = _tiny_cfg(connector, fusion)
    estimated = profile_config(cfg, profile_only=True, batch_size=2)
    measured = profile_config(cfg, batch_size=2)
    assert set(measured) == KEYS
    assert {k: v for k, v in estimated.items() if k not in MEASURED} == {
        k: v for k, v in measured.items() if k not in MEASURED
    }
    assert all(estimated[k] is None for k in MEASURED)
    assert all(measured[k] > 0 for k in MEASURED)
    # the frozen encoder's weights count, but not as trainable
    assert measured['params/vision_encoder'] > 0 and measured['trainable/vision_encoder'] == 0
    # the peak holds at least the weights, the AdamW states (2 per trainable weight) and the gradients
    assert measured['memory/train_step_peak_bytes'] > 4 * (
        measured['params/total'] + 3 * measured['params/trainable']
    )


def test_count_parameters_follows_freezing():
    from vlkit.registry import MODELS

    model = MODELS.build(_tiny_cfg().model)
    before = count_parameters(model)
    model.language_model.requires_grad_(False)
    after = count_parameters(model)
    assert after['trainable/language_model'] == 0 and before['trainable/language_model'] > 0
    assert after['params/trainable'] == after['trainable/connector'] == before['params/connector']
    assert after['params/total'] == before['params/total']


def test_batch_has_one_image_marker_then_text_and_only_text_labels():
    from vlkit.registry import MODELS

    with torch.device('meta'):
        model = MODELS.build(_tiny_cfg().model)
    batch = make_batch(model, image_size=32, text_tokens=10, batch_size=3)
    image_id = model.language_model.image_token_id
    assert batch['input_ids'].shape == (3, 11) and not batch['input_ids'].is_meta
    assert (batch['input_ids'][:, 0] == image_id).all() and (batch['input_ids'][:, 1:] != image_id).all()
    assert (batch['labels'][:, 0] == -100).all() and batch['images'].is_meta


def test_profile_only_needs_the_architecture_as_a_dict():
    cfg = _tiny_cfg()
    cfg.model.language_model.model = 'microsoft/Phi-3-mini-4k-instruct'
    with pytest.raises(ValueError, match=r"language_model.model is the name 'microsoft/Phi-3.*pretrained="):
        profile_config(cfg, profile_only=True)


def test_peak_memory_follows_allocations_and_frees():
    with PeakMemory() as memory:
        a = torch.ones(1000)  # 4000 bytes
        b = torch.ones(2000)  # 8000 bytes: 12000 live
        del a
        c = torch.ones(500)  # 2000 bytes: 10000 live
    assert memory.peak_bytes == 12000 and memory.current_bytes == 10000
    del b, c


# -- pretrained= on the Hugging Face parts ----------------------------------------------------------------


def test_pretrained_weights_replace_the_described_architecture(tmp_path):
    from vlkit.registry import LANGUAGE_MODELS, VISION_ENCODERS

    tower = dict(model_type='siglip_vision_model', hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                 num_attention_heads=2, image_size=16, patch_size=8)  # fmt: skip
    llm = dict(model_type='llama', hidden_size=16, intermediate_size=32, num_hidden_layers=1,
               num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    tokenizer = dict(type='vocab_size_tokenizer', vocab_size=64)
    saved_encoder = VISION_ENCODERS.build(dict(type='HFVisionEncoder', model=tower))
    saved_llm = LANGUAGE_MODELS.build(dict(type='HFCausalLM', model=llm, tokenizer=tokenizer))
    saved_encoder.model.save_pretrained(tmp_path / 'tower')
    saved_llm.model.save_pretrained(tmp_path / 'llm')

    encoder = VISION_ENCODERS.build(
        dict(type='HFVisionEncoder', model=tower, pretrained=str(tmp_path / 'tower'))
    )
    lm = LANGUAGE_MODELS.build(
        dict(type='HFCausalLM', model=llm, tokenizer=tokenizer, pretrained=str(tmp_path / 'llm'))
    )
    for loaded, saved in ((encoder, saved_encoder), (lm, saved_llm)):
        for key, value in saved.model.state_dict().items():
            torch.testing.assert_close(loaded.model.state_dict()[key], value, msg=key)
    assert lm.image_token_id == 3 and len(lm.tokenizer) == 64
