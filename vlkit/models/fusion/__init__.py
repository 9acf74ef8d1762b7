from .autoregressive import IGNORE_INDEX, AutoregressiveFusion
from .base import Fusion

__all__ = ['Fusion', 'AutoregressiveFusion', 'IGNORE_INDEX']
