"""FLOP counting with ``torch.utils.flop_counter.FlopCounterMode``, corrected for what it gets wrong on a CPU.

Units are FLOPs = 2 x multiply-accumulates, as ``FlopCounterMode`` counts them; only matrix products,
convolutions and attention are counted (elementwise work, norms and softmax are not). Two corrections
(docs/architecture.md, "Known pitfalls"):

* SDPA on a CPU runs ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its backward), which
  ``FlopCounterMode`` does not know and counts as 0: its forward is counted as the CUDA kernels' (``QK^T``
  and ``AV``). Every fused attention backward is counted as twice its forward (the gradients of both
  operands of both products), as for any other matrix product and as the unfused (math, meta-device) path
  counts it; the scores that flash kernels recompute in the backward are not counted, so a figure does
  not depend on the kernel (the model-FLOPs convention of MFU figures).
* The backward of a grouped (depthwise) convolution: ``FlopCounterMode`` counts the weight gradient as if
  every input channel met every output channel, ``groups`` times too many (about 1000-fold for
  C-Abstractor's depthwise 3x3 at width 1024). The weight-gradient term is divided by ``groups`` here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils import flop_counter as fc

aten = torch.ops.aten


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    return 2 * fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                        output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:  # fmt: skip
    args = (
        grad_out_shape,
        x_shape,
        w_shape,
        bias,
        stride,
        padding,
        dilation,
        transposed,
        output_padding,
        groups,
    )
    # The input gradient is a (transposed) convolution with the real, per-group weight: counted right.
    grad_input = fc.conv_backward_flop(*args, [output_mask[0], False, False], out_val=out_shape)
    # The weight gradient is counted over all input channels for each output channel: divide by groups.
    grad_weight = fc.conv_backward_flop(*args, [False, output_mask[1], False], out_val=out_shape) // groups
    return grad_input + grad_weight


FLOP_FORMULAS: dict[Any, Callable[..., int]] = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_flop,
    aten._scaled_dot_product_flash_attention_backward: _sdpa_backward_flop,
    aten._scaled_dot_product_efficient_attention_backward: _sdpa_backward_flop,
    aten._scaled_dot_product_cudnn_attention_backward: _sdpa_backward_flop,
    aten.convolution_backward: _conv_backward_flop,
}


def flop_counter() -> fc.FlopCounterMode:
    """A ``FlopCounterMode`` (no printing) with vlkit's corrections; ``get_flop_counts()`` has per-module
    counts keyed by module path."""
    return fc.FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (2 x MAC) of the matrix products, convolutions and attention that ``fn()`` runs, backward
    passes included when ``fn`` calls ``backward()``. Works on meta and fake tensors too."""
    with flop_counter() as counter:
        fn()
    return counter.get_total_flops()
