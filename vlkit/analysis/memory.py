"""Peak tensor memory of a piece of code, on any device (a CPU has no allocator statistics).

``torch.distributed._tools.mem_tracker.MemTracker`` does this too, but it registers gradient hooks on every
parameter of every module it sees and fails on a frozen one (a frozen vision encoder, a frozen LLM).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakMemory(TorchDispatchMode):
    """Counts the bytes of every tensor storage alive while the mode is active: those given to
    :meth:`track` beforehand (weights, gradients, optimizer states, inputs) and every storage an operation
    creates inside, until it is freed. ``peak_bytes`` is the largest total seen.

    Views and in-place results share their base's storage and count once; memory held by kernels
    outside tensors (workspaces) and allocator rounding are not seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[weakref.ref, int]] = {}
        self.current_bytes = 0
        self.peak_bytes = 0

    def track(self, tensors: Iterable[Tensor]) -> None:
        """Counts storages that exist before the mode starts (they are freed while it runs, or not)."""
        for t in tensors:
            self._add(t)

    def _add(self, t: Tensor) -> None:
        if t.device.type == 'meta':
            return
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key in self._live or storage.nbytes() == 0:
            return
        nbytes = storage.nbytes()
        self._live[key] = (weakref.ref(storage, lambda _, key=key: self._free(key)), nbytes)
        self.current_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)

    def _free(self, key: int) -> None:
        _, nbytes = self._live.pop(key, (None, 0))
        self.current_bytes -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, Tensor):
                self._add(t)
        return out


def state_tensors(module: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[Tensor]:
    """The tensors a training step starts with: parameters, their gradients, buffers, optimizer states."""
    tensors = list(module.parameters()) + list(module.buffers())
    tensors += [p.grad for p in module.parameters() if p.grad is not None]
    if optimizer is not None:
        tensors += [v for state in optimizer.state.values() for v in state.values() if isinstance(v, Tensor)]
    return tensors
