"""Training-engine pieces: runners with safe checkpoint loading, crash-safe writes, the non-finite guard,
hooks, and the encoder pretraining stage."""

from .checkpoint import (
    AtomicCheckpointHook,
    CheckpointLoadError,
    RNGStateHook,
    find_resumable_checkpoint,
    load_checkpoint_file,
    read_last_checkpoint,
)
from .encoder_pretraining import ensure_pretrained_encoder
from .guard import GuardedOptimWrapper, NonFiniteError, NonFiniteGuardHook, TrainingFault
from .hooks import AccuracyTableHook, DataSkipError, DataSkipsHook
from .packaged import ensure_packaged_weights
from .precision import PrecisionError, apply_precision, resolve_precision
from .runner import FlexibleRunner, Runner, build_runner

__all__ = [
    'AccuracyTableHook',
    'AtomicCheckpointHook',
    'CheckpointLoadError',
    'DataSkipError',
    'DataSkipsHook',
    'FlexibleRunner',
    'GuardedOptimWrapper',
    'NonFiniteError',
    'NonFiniteGuardHook',
    'PrecisionError',
    'RNGStateHook',
    'Runner',
    'TrainingFault',
    'apply_precision',
    'build_runner',
    'ensure_packaged_weights',
    'ensure_pretrained_encoder',
    'find_resumable_checkpoint',
    'load_checkpoint_file',
    'read_last_checkpoint',
    'resolve_precision',
]
