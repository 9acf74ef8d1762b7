# Flamingo's Perceiver Resampler: 64 latents, 8 heads of 64, mlp ratio 4 (paper depth 6; 2 here for a CPU).
connector = dict(type='PerceiverResampler', num_latents=64, depth=2, num_heads=8, head_dim=64, mlp_ratio=4)
