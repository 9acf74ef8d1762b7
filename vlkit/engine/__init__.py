"""Training-engine pieces: the checkpoint-loading fix and vlkit's hooks."""

from .checkpoint import register_trusted_checkpoint_loader
from .hooks import AccuracyTableHook

register_trusted_checkpoint_loader()

__all__ = ['AccuracyTableHook', 'register_trusted_checkpoint_loader']
