from .base import VisionEncoder, VisualFeatures
from .hf_encoder import HFVisionEncoder
from .timm_encoder import TimmVisionEncoder

__all__ = ['VisionEncoder', 'VisualFeatures', 'TimmVisionEncoder', 'HFVisionEncoder']
