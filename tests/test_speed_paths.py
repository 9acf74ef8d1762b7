"""The speed-path ops (vlkit.ops.context_space, vlkit.ops.layer_norm_linear) compute what their plain
compositions do, values and gradients, and the layers take them exactly where they are cheaper."""

import pytest
import torch
from torch import nn

from vlkit.models.layers import MultiheadAttention
from vlkit.ops import layer_norm_linear


def _grads(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in module.named_parameters()}


def _with_projected_keys(attn: MultiheadAttention, x, context, mask):
    """The same attention with the keys and values projected, the textbook order."""
    return attn(x, mask=mask, kv=attn.to_kv(context))


@pytest.mark.parametrize('mask_kind', ['none', 'padding', 'per_query', 'empty_row'])
def test_attention_in_context_space_matches_projected_keys(mask_kind):
    torch.manual_seed(0)
    attn = MultiheadAttention(32, num_heads=4, kv_dim=48, qkv_bias=True, out_bias=True)
    x, context = torch.randn(2, 3, 32, requires_grad=True), torch.randn(2, 40, 48, requires_grad=True)
    assert attn.attends_in_context_space(x, context)  # 3 queries, head width 8, over 40 tokens of 48
    mask = {
        'none': None,
        'padding': torch.arange(40) < torch.tensor([[40], [17]]),
        'per_query': torch.rand(2, 3, 40) > 0.3,
        'empty_row': torch.ones(2, 3, 40, dtype=torch.bool).index_fill(1, torch.tensor([1]), False),
    }[mask_kind]
    grad = torch.randn(2, 3, 32)
    results = []
    for run in (attn, lambda *a: _with_projected_keys(attn, *a)):
        attn.zero_grad(set_to_none=True)
        x.grad = context.grad = None
        out = run(x, context, mask)
        out.backward(grad)
        results.append((out.detach(), _grads(attn), x.grad.clone(), context.grad.clone()))
    (out, grads, gx, gc), (ref_out, ref_grads, ref_gx, ref_gc) = results
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gx, ref_gx, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gc, ref_gc, atol=1e-5, rtol=1e-4)
    ref_grads['to_kv.bias'][:32] = 0.0  # the key bias shifts every score of a row alike: no gradient
    torch.testing.assert_close(grads, ref_grads, atol=1e-5, rtol=1e-4)
    if mask_kind == 'empty_row':  # a query that sees no key gets only the output bias
        torch.testing.assert_close(out[:, 1], attn.to_out.bias.expand(2, -1).detach())


def test_many_queries_keep_the_projected_order():
    attn = MultiheadAttention(32, num_heads=4, kv_dim=48)
    assert not attn.attends_in_context_space(torch.zeros(1, 64, 32), torch.zeros(1, 40, 48))
    assert not attn.attends_in_context_space(torch.zeros(1, 3, 32), torch.zeros(1, 2, 48))
    assert not attn.attends_in_context_space(torch.zeros(1, 3, 32), None)  # self-attention


@pytest.mark.parametrize('input_needs_grad', [False, True])
def test_layer_norm_linear_matches_norm_then_linear(input_needs_grad):
    torch.manual_seed(0)
    norm, linear = nn.LayerNorm(24), nn.Linear(24, 40)
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x = torch.randn(2, 9, 24, requires_grad=input_needs_grad)
    grad = torch.randn(2, 9, 40)
    results = []
    fused = lambda x, n, lin: layer_norm_linear(x, n.weight, n.bias, n.eps, lin.weight, lin.bias)  # noqa: E731
    for run in (fused, lambda x, n, lin: lin(n(x))):
        norm.zero_grad(set_to_none=True), linear.zero_grad(set_to_none=True)
        out = run(x, norm, linear)
        out.backward(grad)
        results.append((out.detach(), _grads(norm), _grads(linear)))
    for ours, ref in zip(*results, strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
