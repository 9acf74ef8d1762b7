from .shards import ConversationShards, SkipCounter, SyntheticShards, vlm_collate

__all__ = ['ConversationShards', 'SyntheticShards', 'SkipCounter', 'vlm_collate']
