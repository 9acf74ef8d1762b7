"""The connector contract (docs/architecture.md, "Connector"), for every registered connector, and a value
test for each connector that no reference equivalence test covers (tests/test_equivalence.py covers the
others).

A connector that is registered but has no entry in vlkit.testing.TINY_CONNECTORS fails
``test_every_connector_is_covered``.
"""

import glob
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from vlkit.registry import CONNECTORS
from vlkit.testing import TINY_CONNECTORS as TINY

IN_DIM, OUT_DIM, GRID = 32, 48, (4, 6)
CONNECTOR_CONFIGS = Path(__file__).resolve().parents[1] / 'configs' / '_base_' / 'connectors'


def _names():
    CONNECTORS.import_from_location()
    return sorted(CONNECTORS.module_dict)


def _build(name, out_dim=OUT_DIM):
    return CONNECTORS.build(
        dict(type=name, in_dim=IN_DIM, out_dim=out_dim, **_grid_arg(CONNECTORS.get(name)), **TINY[name])
    )


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
        torch.testing.assert_close(frozen, plain, atol=1e-5, rtol=1e-4)  # the equivalence tolerances


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


@pytest.mark.parametrize('name', _names())
def test_the_declared_token_knob_sets_the_number_of_visual_tokens(name):
    cls = CONNECTORS.get(name)
    if cls.token_knob is None:  # a projector: one output token per input token, or a fixed ratio
        assert _build(name).num_output_tokens(24) in (24, 24 // TINY[name].get('factor', 1) ** 2)
        return
    c = _build(name)
    rebuilt = CONNECTORS.build(
        dict(type=name, in_dim=IN_DIM, out_dim=OUT_DIM, **_grid_arg(cls), **{**TINY[name], cls.token_knob: 9})
    )
    assert rebuilt.num_output_tokens(24) == 9 != c.num_output_tokens(24)
    assert rebuilt(*_inputs(), GRID).shape[1] == 9


def _grid_arg(cls) -> dict:
    return {'input_grid': GRID} if cls.wants_input_grid() else {}


def test_linear_projector_is_one_affine_map_per_token():
    c = _build('LinearProjector')
    with torch.no_grad():
        c.proj.weight.copy_(torch.eye(OUT_DIM, IN_DIM) * 2)
        c.proj.bias.fill_(0.5)
    x, _ = _inputs()
    expected = torch.nn.functional.pad(2 * x, (0, OUT_DIM - IN_DIM)) + 0.5
    torch.testing.assert_close(c(x, None, GRID), expected)


def test_avgpool_projector_averages_only_the_real_tokens_of_each_cell():
    c = CONNECTORS.build(dict(type='AvgPoolProjector', in_dim=1, out_dim=1, num_tokens=1, depth=1))
    with torch.no_grad():
        c.net[0].weight.fill_(1.0)
        c.net[0].bias.zero_()
    x = torch.tensor([[1.0, 2.0, 3.0, 10.0]])[..., None]  # one 2 x 2 grid, one pooled cell
    mask = torch.tensor([[True, True, True, False]])
    assert c(x, None, (2, 2)).flatten().tolist() == [4.0]  # (1 + 2 + 3 + 10) / 4
    assert c(x, mask, (2, 2)).flatten().tolist() == [2.0]  # (1 + 2 + 3) / 3: the masked 10 is left out
    two_cells = CONNECTORS.build(dict(type='AvgPoolProjector', in_dim=1, out_dim=1, num_tokens=4, depth=1))
    with torch.no_grad():
        two_cells.net[0].weight.fill_(1.0)
        two_cells.net[0].bias.zero_()
    grid = torch.arange(16.0).view(1, 16, 1)  # a 4 x 4 grid pooled to 2 x 2
    keep = torch.ones(1, 16, dtype=torch.bool)
    keep[0, [0, 1]] = False  # two tokens of the top-left cell
    out = two_cells(grid, keep, (4, 4)).flatten().tolist()
    assert out == [(4 + 5) / 2, (2 + 3 + 6 + 7) / 4, (8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]


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
