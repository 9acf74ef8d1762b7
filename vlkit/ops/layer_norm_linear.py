"""``linear(layer_norm(x))`` with a cheaper backward when ``x`` needs no gradient (a frozen encoder's
features entering a trained connector): the same values and parameter gradients.

Equivalent PyTorch code::

    F.linear(F.layer_norm(x, x.shape[-1:], norm_weight, norm_bias, eps), weight, bias)

With ``x_hat`` the normalised input, the output is ``(x_hat * g + b_n) W^T + b``. Autograd would form the
gradient of the normalised input, ``dY W`` (a product as large as the forward), only to reduce it to the
norm's two vectors. They follow from ``G = dY^T x_hat``, which the weight gradient needs anyway:
``dW = G * g + outer(sum dY, b_n)``, ``dg = sum_rows(W * G)``, ``db_n = (sum dY) W``, ``db = sum dY``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class _LayerNormLinear(torch.autograd.Function):
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


def layer_norm_linear(
    x: Tensor,
    norm_weight: Tensor | None,
    norm_bias: Tensor | None,
    eps: float,
    weight: Tensor,
    bias: Tensor | None,
) -> Tensor:
    """``linear(layer_norm(x))`` (module docstring); the cheaper backward applies when ``x`` needs no gradient
    and the norm has both affine parameters, the plain composition otherwise."""
    if not needs_only_parameter_grads(x) or norm_weight is None or norm_bias is None:
        return F.linear(F.layer_norm(x, x.shape[-1:], norm_weight, norm_bias, eps), weight, bias)
    return _LayerNormLinear.apply(x, norm_weight, norm_bias, eps, weight, bias)
