"""Attention in the context's space: the same values as projecting the keys and values, fewer FLOPs for few
queries over many wide tokens (BLIP-2's 32 queries over 729 tokens of 1152: about half).

Equivalent PyTorch code (per head ``h``; ``W_k``, ``W_v``, ``b_v`` the key/value projection's rows of it)::

    k, v = context @ W_k.T + b_k, context @ W_v.T + b_v
    out_h = softmax(q_h @ k.T * scale) @ v

Moving the projections onto the queries' side, ``q_h k^T = (q_h W_k) c^T`` and ``P v = (P c) W_v^T + b_v``,
every head attends to the raw context ``c`` (one head as wide as the context, the heads stacked along the
queries), so the context is never projected. The key bias adds one constant per query row, which the
softmax ignores; rows that see no key get no value bias, as they get zeros from attention.

Used by :class:`vlkit.models.layers.MultiheadAttention` when :func:`context_space_is_cheaper` says so.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from .attention import attention

# The attention here has a head as wide as the context (1152 in SigLIP): the math backend's two plain products
# beat the fused SDPA kernel there (79 ms against 134 ms on a 2-core CPU), so 'auto' means 'math' for this op.
AUTO_BACKEND = 'math'
# Take the reordered products only when they save at least a fifth: they run a little less efficiently.
MARGIN = 0.8


def context_space_is_cheaper(
    num_queries: int, num_keys: int, inner: int, kv_dim: int, num_heads: int
) -> bool:
    """Whether :func:`context_space_attention` costs fewer multiply-adds than projecting the keys and values
    (``inner`` = heads x head width, ``kv_dim`` = the context's width), by :data:`MARGIN`."""
    projected = num_keys * kv_dim * 2 * inner + 2 * num_queries * num_keys * inner
    in_context = 2 * num_queries * inner * kv_dim + 2 * num_heads * num_queries * num_keys * kv_dim
    return in_context < MARGIN * projected


def context_space_attention(
    q: Tensor,
    context: Tensor,
    kv_weight: Tensor,
    kv_bias: Tensor | None,
    mask: Tensor | None = None,
    *,
    num_heads: int,
    backend: str = 'auto',
) -> Tensor:
    """Multi-head attention of projected queries to a context whose keys and values are not projected.

    Args:
        q: projected queries [B, Lq, H * Dh].
        context: [B, Lk, C].
        kv_weight: the fused key/value projection [2 * H * Dh, C] (keys first, as ``to_kv``).
        kv_bias: its bias [2 * H * Dh] or None.
        mask: [B, Lk] or [B, Lq, Lk], True where a query may attend.
        num_heads: H.
        backend: see :func:`vlkit.ops.attention`; ``'auto'`` is :data:`AUTO_BACKEND` here.

    Returns:
        The heads' outputs [B, Lq, H * Dh], before the output projection.
    """
    h, lq = num_heads, q.shape[1]
    w_k, w_v = rearrange(kv_weight, '(two h d) c -> two h d c', two=2, h=h)
    q = torch.einsum('bhnd,hdc->bhnc', rearrange(q, 'b n (h d) -> b h n d', h=h), w_k)
    if mask is not None:  # [B, Lk] or [B, Lq, Lk] -> per stacked query row [B, H * Lq, Lk]
        mask = mask[:, None, None] if mask.dim() == 2 else mask[:, None]
        mask = mask.expand(-1, h, lq, -1).flatten(1, 2)
    out = attention(
        rearrange(q, 'b h n c -> b 1 (h n) c'), context[:, None], context[:, None], mask,
        scale=w_k.shape[1] ** -0.5, backend=AUTO_BACKEND if backend == 'auto' else backend,
    )  # fmt: skip
    out = torch.einsum('bhnc,hdc->bnhd', rearrange(out, 'b 1 (h n) c -> b h n c', h=h), w_v)
    if kv_bias is not None:
        b_v = rearrange(kv_bias, '(two h d) -> two h d', two=2, h=h)[1]
        has_key = 1.0 if mask is None else rearrange(mask.any(-1), 'b (h n) -> b n h 1', h=h)
        out = out + b_v * has_key  # attention weights sum to 1, except on rows that see no key
    return out.flatten(2)
