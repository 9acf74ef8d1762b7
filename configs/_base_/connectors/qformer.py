# BLIP-2's Q-Former: 32 queries, cross-attention every 2nd layer (paper: dim 768, 12 layers, 12 heads,
# mlp 3072; scaled to the tiny default model's width).
connector = dict(
    type='QFormer', num_queries=32, dim=256, depth=4, num_heads=4, mlp_dim=1024, cross_attn_every=2
)
