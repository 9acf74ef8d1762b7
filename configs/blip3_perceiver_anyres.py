# BLIP-3 (xGen-MM) with patch-wise any-resolution encoding: the default job's encoder, perceiver and LLM on
# the high-resolution synthetic variant, each image encoded as a global view plus a grid of 64 px crops
# whose perceiver tokens are concatenated, with a learned separator between crops.
_base_ = [
    '_base_/default_runtime.py',
    '_base_/encoders/tiny_vit.py',
    '_base_/llms/tiny_llama.py',
    '_base_/data/synthetic_hires.py',
    '_base_/schedules/cpu_short.py',
]

connector = dict(type='PerceiverResampler', num_latents=32, depth=2, num_heads=4, head_dim=48, mlp_ratio=2)
fusion = dict(type='AutoregressiveFusion')
model_settings = dict(crop_separator=True)
