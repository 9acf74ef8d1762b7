"""Building blocks shared by every connector and fusion layer."""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from ..ops import attention, context_space_attention, context_space_is_cheaper


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
        if kv is None and self.attends_in_context_space(x, context):
            return self._forward_in_context_space(x, context, mask)
        if kv is None:
            kv = self.to_kv(x if context is None else context)
        q = rearrange(self.to_q(x), 'b n (h d) -> b h n d', h=self.num_heads)
        k, v = rearrange(kv, 'b n (two h d) -> two b h n d', two=2, h=self.num_heads)
        out = attention(q, k, v, mask, backend=self.backend)
        return self.to_out(rearrange(out, 'b h n d -> b n (h d)'))

    def attends_in_context_space(self, x: Tensor, context: Tensor | None) -> bool:
        """Whether ``forward`` takes the speed path: few queries over many wide context tokens, where
        :func:`vlkit.ops.context_space_attention` gives the same values with fewer multiply-adds."""
        if context is None:
            return False
        inner, kv_dim = self.to_q.out_features, self.to_kv.in_features
        return context_space_is_cheaper(x.shape[1], context.shape[1], inner, kv_dim, self.num_heads)

    def _forward_in_context_space(self, x: Tensor, context: Tensor, mask: Tensor | None) -> Tensor:
        out = context_space_attention(
            self.to_q(x), context, self.to_kv.weight, self.to_kv.bias, mask,
            num_heads=self.num_heads, backend=self.backend,
        )  # fmt: skip
        return self.to_out(out)


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
