"""The one place in vlkit where softmax(Q K^T / sqrt(d)) V is written.

Every connector and fusion layer attends through :func:`attention`, usually by way of
:class:`vlkit.models.layers.MultiheadAttention`. Backends declare what they support; ``auto`` takes the
first that fits, and an explicit backend that cannot run raises an error that lists why.

Equivalent PyTorch code for every backend::

    scores = q @ k.transpose(-2, -1) * scale                  # scale defaults to q.shape[-1] ** -0.5
    scores = scores.masked_fill(~mask, float('-inf'))        # mask broadcast to [B, H, Lq, Lk]
    out = scores.softmax(-1) @ v                              # rows with no visible key give 0
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['attention', 'auto_backend', 'available_backends', 'BACKENDS', 'AttentionBackendError']


class AttentionBackendError(RuntimeError):
    """Raised when the requested attention backend cannot run the given inputs."""


def _full_mask(mask: Tensor | None, causal: bool, q: Tensor, k: Tensor) -> Tensor | None:
    """Combines a key-padding or broadcastable boolean mask with causality into [B, 1|H, Lq, Lk]."""
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f'attention mask must be bool (True = attend), got {mask.dtype}')
        if mask.dim() == 2:  # [B, Lk] key padding
            mask = mask[:, None, None, :]
        elif mask.dim() == 3:  # [B, Lq, Lk]
            mask = mask[:, None]
    if causal:
        lq, lk = q.shape[-2], k.shape[-2]
        # bottom-right aligned, as in decoding with a cache: query i sees keys up to i + (lk - lq)
        tri = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
        mask = tri if mask is None else mask & tri
    return mask


def _zero_empty_rows(out: Tensor, mask: Tensor | None) -> Tensor:
    """Rows of queries that see no key at all output zeros (Flamingo text before its first image). Always
    applied when there is a mask: asking first whether any row is empty would read a value on the host
    (a device sync, and a graph break under ``torch.compile``)."""
    if mask is None:
        return out
    return out.masked_fill(~mask.any(-1, keepdim=True), 0.0)


def _math(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float('-inf'))
        scores = scores.masked_fill(~mask.any(-1, keepdim=True), 0.0)  # avoid NaN on empty rows
    return _zero_empty_rows(torch.matmul(scores.softmax(-1), v), mask)


def _sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    safe = mask | ~mask.any(-1, keepdim=True)  # empty rows attend everywhere, then are zeroed
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, scale=scale)
    return _zero_empty_rows(out, mask)


def _xformers_ops():
    """``xformers.ops``, imported on first use (on CUDA only: it has no CPU kernels)."""
    return importlib.import_module('xformers.ops')


def _xformers(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    xops = _xformers_ops()
    bias = None
    if mask is not None:
        safe = mask | ~mask.any(-1, keepdim=True)
        shape = (q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        # xformers wants a float bias whose last dim is aligned to 8 elements in memory
        padded = math.ceil(shape[-1] / 8) * 8
        bias = q.new_zeros(shape[:-1] + (padded,))[..., : shape[-1]]
        bias.masked_fill_(~safe.expand(shape), float('-inf'))
    out = xops.memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias, scale=scale
    ).transpose(1, 2)
    return _zero_empty_rows(out, mask)


def _math_reasons(q: Tensor, k: Tensor, v: Tensor) -> list[str]:
    return []


def _sdpa_reasons(q: Tensor, k: Tensor, v: Tensor) -> list[str]:
    return [] if hasattr(F, 'scaled_dot_product_attention') else ['torch has no scaled_dot_product_attention']


def _xformers_reasons(q: Tensor, k: Tensor, v: Tensor) -> list[str]:
    reasons = []
    if q.device.type != 'cuda':
        reasons.append(f'xformers has no kernel for device {q.device.type!r} (needs cuda)')
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        reasons.append(f'xformers does not support dtype {q.dtype}')
    problem = None if reasons else _xformers_import_problem()
    if not reasons and not problem:
        problem = _xformers_kernel_problem(q.device, q.dtype, q.shape[-1], v.shape[-1])
    return reasons + ([problem] if problem else [])


@functools.cache
def _xformers_import_problem() -> str | None:
    """Why ``xformers.ops`` cannot be used (not installed, or fails to import, e.g. built for another
    torch), or None. Imported only when a CUDA input asks, since xformers has no CPU kernels."""
    if importlib.util.find_spec('xformers') is None:
        return 'xformers is not installed (pip install "vlkit[gpu]")'
    try:
        _xformers_ops()
    except Exception as exc:  # noqa: BLE001 - any import failure means: use another backend
        return f'xformers.ops fails to import ({type(exc).__name__}: {exc})'
    return None


@functools.cache
def _xformers_kernel_problem(device: torch.device, dtype: torch.dtype, qk_dim: int, v_dim: int) -> str | None:
    """Why xformers has no kernel for these inputs, found by running it once on tiny ones with a mask
    (its wheels can import yet hold no CUDA kernels, e.g. when built for another torch or CUDA)."""
    xops = _xformers_ops()
    q = torch.zeros(1, 8, 1, qk_dim, device=device, dtype=dtype)
    v = torch.zeros(1, 8, 1, v_dim, device=device, dtype=dtype)
    bias = torch.zeros(1, 1, 8, 8, device=device, dtype=dtype)
    try:
        xops.memory_efficient_attention(q, q, v, attn_bias=bias)
    except NotImplementedError as exc:  # its message lists each kernel's reasons, indented, after the inputs
        lines = str(exc).splitlines()
        why = dict.fromkeys(ln.strip() for ln in lines[1:] if ln.startswith(' ' * 4) and ':' not in ln)
        return (f'xformers has no kernel for {dtype} (q/k width {qk_dim}, v width {v_dim}) on {device}: '
                + '; '.join(why))  # fmt: skip
    return None


@dataclass(frozen=True)
class Backend:
    """An attention implementation and the check that says why it cannot run some inputs."""

    name: str
    run: Callable[[Tensor, Tensor, Tensor, Tensor | None, float], Tensor]
    reasons_not_supported: Callable[[Tensor, Tensor, Tensor], list[str]]


# In priority order for ``backend='auto'``.
BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend('xformers', _xformers, _xformers_reasons),
        Backend('sdpa', _sdpa, _sdpa_reasons),
        Backend('math', _math, _math_reasons),
    )
}


def available_backends(q: Tensor, k: Tensor | None = None, v: Tensor | None = None) -> list[str]:
    """Names of the backends that can run these inputs, in ``auto`` priority order."""
    k = q if k is None else k
    v = k if v is None else v
    return [name for name, b in BACKENDS.items() if not b.reasons_not_supported(q, k, v)]


# On a CPU, bf16 and fp16 attention runs faster as two plain products (``math``) than through SDPA's fused
# CPU kernel while the score matrix of one head is at most this many elements (benchmarks/attention.py; its
# table in benchmarks/RESULTS.md): the fused kernel pays off only on long sequences.
CPU_LOW_PRECISION_MATH_SCORES = 768 * 768


def auto_backend(q: Tensor, k: Tensor | None = None, v: Tensor | None = None) -> str:
    """The backend ``backend='auto'`` takes for these inputs: the first available one
    (:func:`available_backends`), except bf16 / fp16 on a CPU with a score matrix of at most
    :data:`CPU_LOW_PRECISION_MATH_SCORES` elements per head, which takes ``math``."""
    k = q if k is None else k
    low_precision = q.dtype in (torch.bfloat16, torch.float16)
    if (
        q.device.type == 'cpu'
        and low_precision
        and q.shape[-2] * k.shape[-2] <= CPU_LOW_PRECISION_MATH_SCORES
    ):
        return 'math'
    return available_backends(q, k, v)[0]


def _check_shapes(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f'q, k, v must be [B, H, L, Dh]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}'
        )
    if k.shape[:3] != v.shape[:3] or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f'incompatible q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: '
            'batch and heads must agree, k and v must have the same length, q and k the same head dim'
        )


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    causal: bool = False,
    scale: float | None = None,
    backend: str = 'auto',
) -> Tensor:
    """Scaled dot-product attention.

    Args:
        q: queries [B, H, Lq, Dh].
        k: keys [B, H, Lk, Dh].
        v: values [B, H, Lk, Dv].
        mask: boolean, True where a query may attend: key padding [B, Lk], [B, Lq, Lk], or broadcastable
            to [B, H, Lq, Lk]. A query row with no visible key outputs zeros.
        causal: query i sees keys up to i + (Lk - Lq).
        scale: the factor on Q K^T (default ``Dh ** -0.5``).
        backend: 'auto' (:func:`auto_backend`), 'math', 'sdpa' or 'xformers'.

    Returns:
        [B, H, Lq, Dv].
    """
    _check_shapes(q, k, v)
    full = _full_mask(mask, causal, q, k)
    if backend == 'auto':
        name = auto_backend(q, k, v)
    elif backend not in BACKENDS:
        raise AttentionBackendError(
            f'unknown attention backend {backend!r}; expected one of {["auto", *BACKENDS]}'
        )
    else:
        reasons = BACKENDS[backend].reasons_not_supported(q, k, v)
        if reasons:
            raise AttentionBackendError(
                f'attention backend {backend!r} cannot run these inputs: ' + '; '.join(reasons)
            )
        name = backend
    return BACKENDS[name].run(q, k, v, full, q.shape[-1] ** -0.5 if scale is None else scale)
