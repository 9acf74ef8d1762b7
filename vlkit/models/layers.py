"""Building blocks shared by every connector and fusion layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..ops import attention


class MultiheadAttention(nn.Module):
    """Multi-head attention over ``vlkit.ops.attention``: queries from ``x``, keys and values from ``context``
    (``x`` itself when ``context`` is None).

    Keys and values come from one fused projection (``to_kv``, keys first), as in Flamingo's perceiver.

    Args:
        dim: width of the queries and of the output.
        num_heads: number of heads.
        head_dim: width of each head (default ``dim // num_heads``).
        kv_dim: width of the context (default ``dim``).
        qkv_bias: whether the q/kv projections have a bias.
        out_bias: whether the output projection has a bias.
        backend: attention backend, see :func:`vlkit.ops.attention`.
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        head_dim: int | None = None,
        kv_dim: int | None = None,
        qkv_bias: bool = False,
        out_bias: bool = False,
        backend: str = 'auto',
    ) -> None:
        super().__init__()
        head_dim = head_dim or dim // num_heads
        inner = num_heads * head_dim
        self.num_heads = num_heads
        self.backend = backend
        self.to_q = nn.Linear(dim, inner, bias=qkv_bias)
        self.to_kv = nn.Linear(kv_dim or dim, 2 * inner, bias=qkv_bias)
        self.to_out = nn.Linear(inner, dim, bias=out_bias)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        kv: Tensor | None = None,
    ) -> Tensor:
        # x [B, Lq, dim], context [B, Lk, kv_dim], mask [B, Lk] or [B, Lq, Lk] (True = attend)
        # -> [B, Lq, dim]; kv [B, Lk, 2 * inner]: the context already projected by to_kv (context unused)
        few_queries = context is not None and self._cheaper_in_context_space(x.shape[1], context.shape[1])
        if kv is None and few_queries:
            return self.to_out(self._attend_in_context_space(x, context, mask))
        if kv is None:
            kv = self.to_kv(x if context is None else context)
        q = rearrange(self.to_q(x), 'b n (h d) -> b h n d', h=self.num_heads)
        k, v = rearrange(kv, 'b n (two h d) -> two b h n d', two=2, h=self.num_heads)
        out = attention(q, k, v, mask, backend=self.backend)
        return self.to_out(rearrange(out, 'b h n d -> b n (h d)'))

    def _cheaper_in_context_space(self, num_queries: int, num_keys: int) -> bool:
        """Whether attending in the context's space (see :meth:`_attend_in_context_space`) costs fewer
        multiply-adds than projecting the keys and values: true for few queries over many wide tokens,
        e.g. BLIP-2's 32 queries over 729 tokens of 1152 (about half the cost)."""
        inner, kv_dim = self.to_q.out_features, self.to_kv.in_features
        projected = num_keys * kv_dim * 2 * inner + 2 * num_queries * num_keys * inner
        in_context = 2 * num_queries * inner * kv_dim + 2 * self.num_heads * num_queries * num_keys * kv_dim
        return in_context < 0.8 * projected  # margin: the reordered products run a little less efficiently

    def _attend_in_context_space(self, x: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        """The same attention with the key and value projections moved onto the queries' side:
        ``q_h k_h^T = (q_h W_k,h) c^T`` and ``P_h v_h = (P_h c) W_v,h^T + b_v,h``. Every head then attends to
        the raw context ``c`` (one head of width ``kv_dim``, the heads stacked along the queries), so the
        context is never projected. The key bias adds one constant per query row, which the softmax
        ignores. Returns the heads' outputs [B, Lq, inner], before ``to_out``."""
        h, lq = self.num_heads, x.shape[1]
        w_k, w_v = rearrange(self.to_kv.weight, '(two h d) c -> two h d c', two=2, h=h)
        q = rearrange(self.to_q(x), 'b n (h d) -> b h n d', h=h)
        q = torch.einsum('bhnd,hdc->bhnc', q, w_k)
        if mask is not None:  # [B, Lk] or [B, Lq, Lk] -> per stacked query row [B, H * Lq, Lk]
            mask = mask[:, None, None] if mask.dim() == 2 else mask[:, None]
            mask = mask.expand(-1, h, lq, -1).flatten(1, 2)
        # a head as wide as the context: two plain products beat the fused kernels (measured on a CPU)
        backend = 'math' if self.backend == 'auto' else self.backend
        out = attention(
            rearrange(q, 'b h n c -> b 1 (h n) c'), context[:, None], context[:, None], mask,
            scale=w_k.shape[1] ** -0.5, backend=backend,
        )  # fmt: skip
        out = torch.einsum('bhnc,hdc->bnhd', rearrange(out, 'b 1 (h n) c -> b h n c', h=h), w_v)
        if self.to_kv.bias is not None:
            b_v = rearrange(self.to_kv.bias, '(two h d) -> two h d', two=2, h=h)[1]
            has_key = 1.0 if mask is None else rearrange(mask.any(-1), 'b (h n) -> b n h 1', h=h)
            out = out + b_v * has_key  # attention weights sum to 1, except on rows that see no key
        return out.flatten(2)


class _LayerNormLinear(torch.autograd.Function):
    """``linear(layer_norm(x))`` for an ``x`` that needs no gradient, with a cheaper backward.

    With ``x_hat`` the normalised input, the output is ``(x_hat * g + b_n) W^T + b``. Autograd would form
    the gradient of the normalised input, ``dY W`` (a product as large as the forward), only to reduce it to
    the norm's two vectors. They follow from ``G = dY^T x_hat``, which the weight gradient needs anyway:
    ``dW = G * g + outer(sum dY, b_n)``, ``dg = sum_rows(W * G)``, ``db_n = (sum dY) W``, ``db = sum dY``.
    """

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, eps, weight, bias):
        x_hat = F.layer_norm(x, x.shape[-1:], None, None, eps)
        y = F.linear(torch.addcmul(norm_bias, x_hat, norm_weight), weight, bias)
        ctx.save_for_backward(x_hat, norm_weight, norm_bias, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x_hat, norm_weight, norm_bias, weight = ctx.saved_tensors
        grad_rows = grad_y.flatten(0, -2)
        g = grad_rows.T @ x_hat.flatten(0, -2)  # [out, in]
        grad_sum = grad_rows.sum(0)
        grad_weight = torch.addr(g * norm_weight, grad_sum, norm_bias)
        grad_norm_weight = (weight * g).sum(0)
        grad_norm_bias = grad_sum @ weight
        return None, grad_norm_weight, grad_norm_bias, None, grad_weight, grad_sum if ctx.has_bias else None


def needs_only_parameter_grads(x: Tensor) -> bool:
    """Whether a backward through ``x`` needs no gradient for ``x`` itself (frozen-encoder features while
    training): then layers may take cheaper backward paths. Not under autocast, whose casts those paths
    leave to autograd."""
    return torch.is_grad_enabled() and not x.requires_grad and not _autocast_enabled(x.device.type)


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type without autocast (meta: profiling without weights)
        return False


def layer_norm_linear(x: Tensor, norm: nn.LayerNorm, linear: nn.Linear) -> Tensor:
    """``linear(norm(x))``; when ``x`` needs no gradient (a frozen encoder's features), the backward skips
    the gradient of the normalised input (see :class:`_LayerNormLinear`). The same values either way."""
    if not needs_only_parameter_grads(x) or norm.weight is None or norm.bias is None:
        return linear(norm(x))
    return _LayerNormLinear.apply(x, norm.weight, norm.bias, norm.eps, linear.weight, linear.bias)


class FeedForward(nn.Sequential):
    """Pre-norm MLP ``LayerNorm -> Linear -> GELU -> Linear`` (keys ``0``, ``1``, ``3``, as in Flamingo)."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = False) -> None:
        layers = [nn.LayerNorm(dim), nn.Linear(dim, hidden_dim, bias=bias), nn.GELU()]
        super().__init__(*layers, nn.Linear(hidden_dim, dim, bias=bias))


def mlp(in_dim: int, hidden_dim: int, out_dim: int, depth: int, act: str = 'gelu') -> nn.Sequential:
    """``depth`` Linear layers with an activation between each (LLaVA's ``mlp{depth}x_{act}``)."""
    if depth < 1:
        raise ValueError(f'mlp depth must be >= 1, got {depth}')
    acts = {'gelu': nn.GELU, 'relu': nn.ReLU, 'silu': nn.SiLU}
    if act not in acts:
        raise ValueError(f'unknown activation {act!r}; expected one of {sorted(acts)}')
    dims = [in_dim] + [hidden_dim] * (depth - 1) + [out_dim]
    layers: list[nn.Module] = []
    for i in range(depth):
        if i:
            layers.append(acts[act]())
        layers.append(nn.Linear(dims[i], dims[i + 1]))
    return nn.Sequential(*layers)


def tokens_to_map(x: Tensor, grid: tuple[int, int] | None) -> Tensor:
    """Lays tokens [B, h * w, C] out as a feature map [B, C, h, w]; ``grid=None`` means a square grid."""
    n = x.shape[1]
    if grid is None:
        side = round(n**0.5)
        if side * side != n:
            raise ValueError(f'{n} tokens do not form a square grid; pass grid=(h, w)')
        grid = (side, side)
    h, w = grid
    if h * w != n:
        raise ValueError(f'grid {tuple(grid)} holds {h * w} tokens, but the input has {n}')
    return rearrange(x, 'b (h w) c -> b c h w', h=h, w=w)
