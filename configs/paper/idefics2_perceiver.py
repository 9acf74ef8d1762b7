# Idefics2-style Perceiver Resampler: 64 latents, 3 layers, 16 heads of 96 (Idefics2 runs it at the LLM's
# width after an MLP and groups its keys; here at the encoder's width with a projection, as BLIP-3), on the
# same encoder and LLM as the BLIP-3 config.
_base_ = ['_base_/siglip_so400m_384.py', '_base_/phi3_mini.py']

connector = dict(type='PerceiverResampler', num_latents=64, depth=3, num_heads=16, head_dim=96, mlp_ratio=4)
fusion = dict(type='AutoregressiveFusion')
