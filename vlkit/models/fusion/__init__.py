from .autoregressive import IGNORE_INDEX, AutoregressiveFusion
from .base import Fusion, image_markers
from .cross_attention import CrossAttentionFusion, GatedCrossAttentionBlock, MediaContext, decoder_layers

__all__ = [
    'Fusion',
    'AutoregressiveFusion',
    'CrossAttentionFusion',
    'GatedCrossAttentionBlock',
    'MediaContext',
    'IGNORE_INDEX',
    'decoder_layers',
    'image_markers',
]
