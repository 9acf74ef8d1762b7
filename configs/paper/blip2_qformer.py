# BLIP-2's Q-Former (32 queries, BERT-base: width 768, 12 layers, 12 heads, MLP 3072, cross-attention in every
# 2nd layer) on the same encoder and LLM as the BLIP-3 config, with BLIP-2's frozen language model.
_base_ = ['_base_/siglip_so400m_384.py', '_base_/phi3_mini.py']

connector = dict(
    type='QFormer', num_queries=32, dim=768, depth=12, num_heads=12, mlp_dim=3072, cross_attn_every=2
)
fusion = dict(type='AutoregressiveFusion')
language_model = dict(train='frozen')
