"""Running a model whose weights are on the meta device, for FLOP counts without weights or compute.

Meta tensors have shapes but no values, and a VLM reads values along the way: where the ``<image>``
markers are (the fusion), whether a mask hides anything (attention), which image a token sees
(cross-attention). :class:`MetaExecution` keeps those values real: integer and boolean tensors live on
the CPU (token ids, masks, positions, also when code creates them on the device of a meta activation),
floating-point tensors are meta, and an operation that mixes the two gets the CPU operands as meta.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

# Functions that create a tensor from nothing (or from another's device): an integer or boolean result
# meant for the meta device is made on the CPU instead, so that its values exist.
FACTORIES = {
    torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.tensor, torch.eye, torch.randint,
    torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like,
    Tensor.new_zeros, Tensor.new_ones, Tensor.new_full, Tensor.new_empty, Tensor.new_tensor,
}  # fmt: skip


def _is_index_like(t: object) -> bool:
    return isinstance(t, Tensor) and t.is_meta and not (t.is_floating_point() or t.is_complex())


def _mixes_devices(flat: list) -> bool:
    tensors = [t for t in flat if isinstance(t, Tensor)]
    return any(t.is_meta for t in tensors) and any(not t.is_meta and t.dim() > 0 for t in tensors)


# Functions whose result's shape does not depend on the values of their integer or boolean arguments (an
# attention mask): they get those arguments as meta up front. Trying them first with the CPU mask would
# fail part-way, after operations inside them were already counted (SDPA's math decomposition counts Q K^T
# before it adds the mask), and the retry would count them again.
SHAPE_ONLY = {torch.nn.functional.scaled_dot_product_attention}


class MetaExecution(TorchFunctionMode):
    """Within this mode, a model built on the meta device runs on real CPU token ids and masks (see the
    module docstring). Values computed from weights stay unknown: code that reads them (``.item()`` of an
    activation, sampling) still fails, as on any meta tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES:
            out = func(*args, **kwargs)
            return func(*args, **{**kwargs, 'device': 'cpu'}) if _is_index_like(out) else out
        if func is Tensor.to:  # moving a CPU mask "to the model's device" keeps its values
            out = func(*args, **kwargs)
            return args[0].to(dtype=out.dtype) if _is_index_like(out) and not args[0].is_meta else out
        flat, spec = tree_flatten((args, kwargs))
        if func in SHAPE_ONLY and _mixes_devices(flat):
            args, kwargs = _all_meta(flat, spec)
            return func(*args, **kwargs)
        try:
            return func(*args, **kwargs)
        except RuntimeError as err:
            if 'device' not in str(err) or not _mixes_devices(flat):
                raise
        args, kwargs = _all_meta(flat, spec)
        return func(*args, **kwargs)


def _all_meta(flat: list, spec) -> tuple:
    """``(args, kwargs)`` with every tensor on the meta device."""
    return tree_unflatten(
        [t.to('meta') if isinstance(t, Tensor) and not t.is_meta else t for t in flat], spec
    )
