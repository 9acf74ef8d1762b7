"""Training-engine pieces: the checkpoint-loading fix, crash-safe checkpoints and vlkit's hooks."""

from .checkpoint import AtomicCheckpointHook, find_resumable_checkpoint, register_trusted_checkpoint_loader
from .hooks import AccuracyTableHook

register_trusted_checkpoint_loader()

__all__ = [
    'AccuracyTableHook',
    'AtomicCheckpointHook',
    'find_resumable_checkpoint',
    'register_trusted_checkpoint_loader',
]
