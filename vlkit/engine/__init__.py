"""Training-engine pieces: runners with safe checkpoint loading, crash-safe writes, the non-finite guard,
hooks, and the pretraining stages (encoder, language model)."""

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
from .llm_pretraining import ensure_pretrained_llm
from .packaged import ensure_packaged_weights
from .precision import PrecisionError, apply_precision, resolve_precision, run_device
from .runner import FlexibleRunner, Runner, build_runner
from .stages import PRETRAINING_STAGES

# each pretraining stage's config key -> what runs it (once; cached) and points its part at the result
PRETRAINING = {'encoder_pretraining': ensure_pretrained_encoder, 'llm_pretraining': ensure_pretrained_llm}

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
    'PRETRAINING',
    'PRETRAINING_STAGES',
    'PrecisionError',
    'RNGStateHook',
    'Runner',
    'TrainingFault',
    'apply_precision',
    'build_runner',
    'ensure_packaged_weights',
    'ensure_pretrained_encoder',
    'ensure_pretrained_llm',
    'find_resumable_checkpoint',
    'load_checkpoint_file',
    'read_last_checkpoint',
    'resolve_precision',
    'run_device',
]
