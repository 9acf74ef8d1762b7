# Flamingo-style cross-attention fusion: the Perceiver Resampler of Flamingo (64 latents, 6 layers, 8 heads
# of 64) makes the visual tokens, and gated cross-attention blocks (tanh gates at 0) before every 4th
# decoder layer of the frozen language model read them (OpenFlamingo's cross_attn_every_n_layers=4), on the
# same encoder and LLM as the BLIP-3 config.
_base_ = ['_base_/siglip_so400m_384.py', '_base_/phi3_mini.py']

connector = dict(type='PerceiverResampler', num_latents=64, depth=6, num_heads=8, head_dim=64, mlp_ratio=4)
fusion = dict(type='CrossAttentionFusion', every=4)
language_model = dict(train='frozen')
