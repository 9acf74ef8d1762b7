# BLIP-3 (xGen-MM phi3-mini): SigLIP-so400m-384 -> Perceiver Resampler (128 latents, 6 layers, 16 heads of
# 96, a Linear projection to the LLM) -> visual tokens spliced into Phi-3-mini. Paper scale: profile it with
# vlkit.analysis.profile_config(cfg, profile_only=True); it is not trained here.
_base_ = ['_base_/siglip_so400m_384.py', '_base_/phi3_mini.py']

connector = dict(type='PerceiverResampler', num_latents=128, depth=6, num_heads=16, head_dim=96, mlp_ratio=4)
fusion = dict(type='AutoregressiveFusion')
