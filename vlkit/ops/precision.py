"""Running a computation in the precision a run resolved (vlkit.engine.precision resolves it per machine)."""

from __future__ import annotations

import torch

PRECISIONS = ('auto', 'fp32', 'bf16')  # what a config may ask for; 'auto' resolves to one of the other two


def autocast(device_type: str, precision: str) -> torch.autocast:
    """``torch.autocast`` to bf16 for ``precision='bf16'`` on the CPU or a GPU; a disabled context for fp32
    and for other devices (the meta device of profile-only builds)."""
    if precision not in ('fp32', 'bf16'):
        raise ValueError(f"precision must be resolved to 'fp32' or 'bf16' before running, got {precision!r}")
    enabled = precision == 'bf16' and device_type in ('cpu', 'cuda')
    return torch.autocast(
        device_type=device_type if enabled else 'cpu', dtype=torch.bfloat16, enabled=enabled
    )
