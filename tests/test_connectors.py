"""The connector contract (DESIGN §3), for every registered connector.

A connector that is registered but has no entry in TINY fails ``test_every_connector_is_covered``.
"""

import glob
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from vlkit.registry import CONNECTORS

IN_DIM, OUT_DIM, GRID = 32, 48, (4, 6)
CONNECTOR_CONFIGS = Path(__file__).resolve().parents[1] / 'configs' / '_base_' / 'connectors'

# Small hyper-parameters per registered connector.
TINY = {
    'LinearProjector': {},
    'MLPProjector': dict(depth=2),
    'PerceiverResampler': dict(num_latents=5, depth=2, num_heads=2, head_dim=8, mlp_ratio=2),
    'QFormer': dict(num_queries=3, dim=16, depth=3, num_heads=2, mlp_dim=24, cross_attn_every=2),
    'CAbstractor': dict(num_tokens=4, depth=1, hidden_dim=16, mlp_depth=2),
    'AvgPoolProjector': dict(num_tokens=4, depth=2),
    'PixelShuffleProjector': dict(factor=2, depth=2, norm=True),
}


def _names():
    CONNECTORS.import_from_location()
    return sorted(CONNECTORS.module_dict)


def _build(name, out_dim=OUT_DIM):
    cls = CONNECTORS.get(name)
    extra = {'input_grid': GRID} if cls.wants_input_grid() else {}
    return CONNECTORS.build(dict(type=name, in_dim=IN_DIM, out_dim=out_dim, **extra, **TINY[name]))


def _inputs(b=2, n=GRID[0] * GRID[1], seed=0):
    x = torch.randn(b, n, IN_DIM, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, n - 5 :] = False
    return x, mask


def test_every_connector_is_covered():
    missing = set(_names()) - set(TINY)
    assert not missing, f'registered connectors without contract-test settings (add them to TINY): {missing}'


@pytest.mark.parametrize('name', _names())
def test_connector_contract(name):
    torch.manual_seed(0)
    c = _build(name)
    x, mask = _inputs()
    x_before = x.clone()
    y = c(x, mask, GRID)
    assert y.shape == (2, c.num_output_tokens(x.shape[1]), OUT_DIM)
    assert y.isfinite().all()
    assert torch.equal(x, x_before), 'the connector edited its input in place'
    y.square().mean().backward()
    no_grad = [n for n, p in c.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not no_grad, f'parameters without gradient: {no_grad}'


@pytest.mark.parametrize('name', _names())
def test_connector_ignores_masked_tokens(name):
    torch.manual_seed(0)
    c = _build(name).eval()
    x, mask = _inputs()
    noisy = x.clone()
    noisy[~mask] = torch.randn_like(noisy[~mask]) * 10
    y, y_noisy = c(x, mask, GRID), c(noisy, mask, GRID)
    if c.num_output_tokens(x.shape[1]) == x.shape[1]:  # token-wise: compare the real tokens' outputs
        y, y_noisy = y[mask], y_noisy[mask]
    torch.testing.assert_close(y_noisy, y)


def _grads_for(c, x, mask, input_needs_grad: bool):
    c.zero_grad(set_to_none=True)
    y = c(x.clone().requires_grad_(input_needs_grad), mask, GRID)
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(1)))
    return y.detach(), {n: p.grad for n, p in c.named_parameters()}


@pytest.mark.parametrize(
    'name, extra', [(n, {}) for n in _names()] + [('CAbstractor', dict(hidden_dim=IN_DIM))]
)  # the last: the first block's shortcut is the identity
def test_parameter_gradients_do_not_depend_on_a_frozen_input(name, extra):
    # frozen-encoder features (no gradient) take cheaper backward paths in some connectors; the values
    # and every parameter's gradient must be those of the plain path
    torch.manual_seed(0)
    c = (
        _build(name)
        if not extra
        else CONNECTORS.build(
            dict(type=name, in_dim=IN_DIM, out_dim=OUT_DIM, input_grid=GRID, **{**TINY[name], **extra})
        )
    )
    x, mask = _inputs()
    for m in (None, mask):
        frozen, plain = _grads_for(c, x, m, False), _grads_for(c, x, m, True)
        torch.testing.assert_close(frozen, plain, atol=1e-5, rtol=1e-4)  # DESIGN §7 tolerances


@pytest.mark.parametrize('name', _names())
def test_connector_trains_under_bf16_autocast(name):
    torch.manual_seed(0)
    c = _build(name)
    x, mask = _inputs()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = c(x, mask, GRID)
    y.float().square().mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in c.parameters() if p.requires_grad)


@pytest.mark.parametrize('name', _names())
def test_connector_is_stateless(name):
    c = _build(name).eval()
    x, mask = _inputs()
    first = c(x, mask, GRID)
    c(_inputs(seed=1)[0], mask, GRID)
    torch.testing.assert_close(c(x, mask, GRID), first)


@pytest.mark.parametrize('name', _names())
def test_out_dim_none_keeps_in_dim(name):
    c = _build(name, out_dim=None)
    x, mask = _inputs()
    assert c(x, mask, GRID).shape[-1] == IN_DIM == c.out_dim


def test_unknown_connector_names_the_registered_ones():
    match = r"'PerceiverResampeler' is not a registered connector.*Did you mean 'PerceiverResampler'"
    with pytest.raises(KeyError, match=match):
        CONNECTORS.build(dict(type='PerceiverResampeler', in_dim=8))


def test_unknown_connector_argument_is_named():
    with pytest.raises(TypeError, match='num_latent'):
        CONNECTORS.build(dict(type='PerceiverResampler', in_dim=8, num_latent=4))


def _instruction_qformer():
    torch.manual_seed(0)
    cfg = dict(type='QFormer', in_dim=IN_DIM, out_dim=OUT_DIM, instruction_aware=True, **TINY['QFormer'])
    return CONNECTORS.build(cfg)


def test_qformer_ignores_masked_instruction_tokens():
    c = _instruction_qformer().eval()
    x, mask = _inputs()
    dim = TINY['QFormer']['dim']
    text = torch.randn(2, 4, dim)
    text_mask = torch.tensor([[True] * 4, [True, True, False, False]])
    noisy = text.clone()
    noisy[~text_mask] = torch.randn_like(noisy[~text_mask]) * 10
    y = c(x, mask, GRID, instruction=text, instruction_mask=text_mask)
    torch.testing.assert_close(c(x, mask, GRID, instruction=noisy, instruction_mask=text_mask), y)
    assert not torch.allclose(c(x, mask, GRID), y), 'the instruction did not reach the queries'


def test_qformer_refuses_an_instruction_unless_instruction_aware():
    x, mask = _inputs()
    with pytest.raises(ValueError, match='instruction_aware=False'):
        _build('QFormer')(x, mask, GRID, instruction=torch.randn(2, 4, TINY['QFormer']['dim']))


@pytest.mark.parametrize('path', sorted(glob.glob(f'{CONNECTOR_CONFIGS}/*.py')), ids=lambda p: Path(p).name)
def test_every_connector_base_config_builds(path):
    # the tiny default model: a 192-wide encoder on an 8 x 8 grid, a 256-wide LLM
    cfg = Config.fromfile(path).connector
    grid = (8, 8)
    extra = {'input_grid': grid} if CONNECTORS.get(cfg['type']).wants_input_grid() else {}
    c = CONNECTORS.build(cfg, default_args=dict(in_dim=192, out_dim=256, **extra))
    x = torch.randn(1, 64, 192)
    assert c(x, None, grid).shape == (1, c.num_output_tokens(64), 256)
