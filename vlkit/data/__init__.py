from .collate import sample_crops, vlm_collate
from .mixture import MixtureDataset
from .prepare import synthetic_tokenizer
from .sample_photos import SamplePhotoCaptions
from .shards import ConversationShards, Img2DatasetShards, InterleavedShards, PreparedShards, SyntheticShards
from .skips import BadSampleError, SkipCounter

__all__ = [
    'BadSampleError',
    'ConversationShards',
    'Img2DatasetShards',
    'InterleavedShards',
    'MixtureDataset',
    'PreparedShards',
    'SamplePhotoCaptions',
    'SyntheticShards',
    'SkipCounter',
    'sample_crops',
    'synthetic_tokenizer',
    'vlm_collate',
]
