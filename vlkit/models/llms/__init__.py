from .base import LanguageModel
from .hf_causal_lm import HFCausalLM

__all__ = ['HFCausalLM', 'LanguageModel']
