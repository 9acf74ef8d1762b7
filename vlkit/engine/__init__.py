"""Training-engine pieces: checkpoint loading and crash-safe writes, the non-finite guard, hooks."""

from .checkpoint import (
    AtomicCheckpointHook,
    RNGStateHook,
    find_resumable_checkpoint,
    register_trusted_checkpoint_loader,
)
from .guard import GuardedOptimWrapper, NonFiniteError, NonFiniteGuardHook, TrainingFault
from .hooks import AccuracyTableHook, DataSkipError, DataSkipsHook

register_trusted_checkpoint_loader()

__all__ = [
    'AccuracyTableHook',
    'AtomicCheckpointHook',
    'DataSkipError',
    'DataSkipsHook',
    'GuardedOptimWrapper',
    'NonFiniteError',
    'NonFiniteGuardHook',
    'RNGStateHook',
    'TrainingFault',
    'find_resumable_checkpoint',
    'register_trusted_checkpoint_loader',
]
