from . import encoders, fusion, llms  # noqa: F401  (registers the built-in parts)
from .connector import Connector
from .encoders import VisionEncoder
from .fusion import DEFAULT_FUSION, Fusion
from .llms import LanguageModel
from .vlm import VisionLanguageModel

__all__ = ['Connector', 'DEFAULT_FUSION', 'Fusion', 'LanguageModel', 'VisionEncoder', 'VisionLanguageModel']
