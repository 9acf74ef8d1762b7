from .hf_causal_lm import HFCausalLM
from .tokenizer import IMAGE_TOKEN, build_tokenizer

__all__ = ['HFCausalLM', 'build_tokenizer', 'IMAGE_TOKEN']
