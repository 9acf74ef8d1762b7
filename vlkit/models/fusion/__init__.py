from .autoregressive import AutoregressiveFusion
from .base import Fusion, FusionInputs, LanguageModelInputs, image_markers
from .cross_attention import CrossAttentionFusion, GatedCrossAttentionBlock, MediaContext, decoder_layers

DEFAULT_FUSION = 'AutoregressiveFusion'  # what a model without a ``fusion`` config uses

__all__ = [
    'DEFAULT_FUSION',
    'Fusion',
    'FusionInputs',
    'LanguageModelInputs',
    'AutoregressiveFusion',
    'CrossAttentionFusion',
    'GatedCrossAttentionBlock',
    'MediaContext',
    'decoder_layers',
    'image_markers',
]
