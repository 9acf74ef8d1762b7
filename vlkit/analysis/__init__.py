"""Profiling per model, from its config: parameters, tokens, FLOPs, memory, speed (docs/profiling.md)."""

from .flops import FLOP_FORMULAS, count_flops, flop_counter
from .params import count_parameters
from .profile import (
    DEFAULT_TEXT_TOKENS,
    build_model,
    count_model_flops,
    make_batch,
    measure_inference,
    measure_training,
    profile_config,
    profile_model,
    visual_tokens_per_image,
)

__all__ = [
    'FLOP_FORMULAS',
    'count_flops',
    'flop_counter',
    'count_parameters',
    'DEFAULT_TEXT_TOKENS',
    'build_model',
    'count_model_flops',
    'make_batch',
    'measure_inference',
    'measure_training',
    'profile_config',
    'profile_model',
    'visual_tokens_per_image',
]
