from .collate import sample_crops, vlm_collate
from .prepare import synthetic_tokenizer
from .sample_photos import SamplePhotoCaptions
from .shards import ConversationShards, InterleavedShards, SyntheticShards
from .skips import BadSampleError, SkipCounter

__all__ = [
    'BadSampleError',
    'ConversationShards',
    'InterleavedShards',
    'SamplePhotoCaptions',
    'SyntheticShards',
    'SkipCounter',
    'sample_crops',
    'synthetic_tokenizer',
    'vlm_collate',
]
