from .shards import BadSampleError, ConversationShards, SkipCounter, SyntheticShards, vlm_collate

__all__ = ['BadSampleError', 'ConversationShards', 'SyntheticShards', 'SkipCounter', 'vlm_collate']
