"""The one precision switch: ``precision = 'auto' | 'fp32' | 'bf16'`` in a config (``--amp`` is ``'bf16'``).

``bf16`` runs the model under ``torch.autocast(dtype=torch.bfloat16)`` on the CPU or a GPU: matrix products
and attention in bf16, master weights, gradients and the optimizer in fp32 (no loss scaling is needed for
bf16). It needs bf16 units: on a CPU, AVX512-BF16 or AMX (read from ``/proc/cpuinfo``), where bf16 matrix
products run about 3 times the fp32 rate; a CPU without them is refused with a message rather than run
bf16 in slow emulation. ``auto`` takes ``bf16`` where the device has those units and ``fp32`` elsewhere. A
config without the key runs :data:`DEFAULT` (fp32): bf16 becomes the default only once it is measured both
faster and learning as well as fp32 on the default run (docs/speed.md says where that stands). The
precision that ran is written back into the config, so that it is part of every config hash
(``tools/compare.py`` reuses runs by it) and of the pretraining stages' cache keys.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..ops.precision import PRECISIONS
from .stages import PRETRAINING_STAGES

CPU_BF16_FLAGS = ('avx512_bf16', 'amx_bf16')
DEFAULT = 'fp32'  # for a config without a precision key


class PrecisionError(ValueError):
    """A precision the config asks for that this machine cannot run."""


@functools.cache
def cpu_bf16_units() -> list[str]:
    """The bf16 instruction sets this CPU reports (``/proc/cpuinfo`` flags); empty where there are none or
    where the file does not exist (not Linux)."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = {word for line in f if line.startswith('flags') for word in line.split(':', 1)[1].split()}
    except OSError:
        return []
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


def device_bf16_problem(device: str) -> str | None:
    """Why ``device`` ('cpu' or 'cuda') cannot run bf16 at speed, or None."""
    if device == 'cuda':
        return None if torch.cuda.is_bf16_supported() else 'this GPU has no bf16 support'
    if not cpu_bf16_units():
        return f'this CPU reports none of the bf16 instruction sets {list(CPU_BF16_FLAGS)} in /proc/cpuinfo'
    return None


def resolve_precision(requested: str | None, device: str) -> str:
    """``'fp32'`` or ``'bf16'`` for what a config asks (``'auto'``: bf16 where the device has bf16 units;
    ``None``: :data:`DEFAULT`)."""
    requested = requested or DEFAULT
    if requested not in PRECISIONS:
        raise PrecisionError(f'precision={requested!r} is not one of {PRECISIONS}')
    problem = device_bf16_problem(device) if requested != 'fp32' else None
    if requested == 'bf16' and problem:
        raise PrecisionError(f"precision='bf16' (--amp) needs bf16 units: {problem}; use precision='fp32'")
    if requested == 'auto':
        return 'fp32' if problem else 'bf16'
    return requested


def run_device() -> str:
    """The device a run's model trains and evaluates on: ``'cuda'`` where a GPU is visible, else ``'cpu'``."""
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def stage_precision(run_precision: str) -> str:
    """The precision of the pretraining stages, which run on the CPU whatever the run's device: the run's,
    except that a run in bf16 on a GPU pretrains in fp32 on a CPU without bf16 units (not in slow emulation,
    and not refused: the run's precision was asked for its GPU)."""
    return 'fp32' if run_precision == 'fp32' or device_bf16_problem('cpu') else 'bf16'


def apply_precision(cfg: Any, device: str | None = None, requested: str | None = None) -> str:
    """Resolves ``requested`` (default: the config's ``precision``) for ``device`` (default:
    :func:`run_device`) and writes the result into the config: ``precision``, ``model.precision`` and each
    pretraining stage's ``precision`` (:func:`stage_precision`). Every tool that trains, evaluates or
    pretrains calls it, so that the stages' cache keys are the same whichever tool runs them."""
    resolved = resolve_precision(requested or cfg.get('precision'), device or run_device())
    cfg.precision = resolved
    cfg.model.precision = resolved
    for stage in PRETRAINING_STAGES:
        if cfg.get(stage):
            cfg[stage].precision = stage_precision(resolved)
    return resolved
