from . import encoders, fusion, llms  # noqa: F401  (registers the built-in parts)
from .connector import Connector
from .vlm import VisionLanguageModel

__all__ = ['Connector', 'VisionLanguageModel']
