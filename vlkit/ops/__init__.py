"""The numerical primitives: the one attention function and its backends, and two speed paths that compute
exactly what a plain composition does (each with its "equivalent PyTorch code" and an equivalence test)."""

from .attention import AttentionBackendError, attention, available_backends
from .context_space import context_space_attention, context_space_is_cheaper
from .layer_norm_linear import layer_norm_linear, needs_only_parameter_grads
from .precision import PRECISIONS, autocast

__all__ = [
    'attention',
    'available_backends',
    'AttentionBackendError',
    'context_space_attention',
    'context_space_is_cheaper',
    'layer_norm_linear',
    'needs_only_parameter_grads',
    'PRECISIONS',
    'autocast',
]
