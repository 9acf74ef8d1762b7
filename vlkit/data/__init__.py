from .collate import sample_crops, vlm_collate
from .prepare import synthetic_tokenizer
from .shards import ConversationShards, InterleavedShards, SyntheticShards
from .skips import BadSampleError, SkipCounter

__all__ = [
    'BadSampleError',
    'ConversationShards',
    'InterleavedShards',
    'SyntheticShards',
    'SkipCounter',
    'sample_crops',
    'synthetic_tokenizer',
    'vlm_collate',
]
