# Flamingo: a frozen pretrained encoder, a Perceiver Resampler, gated cross-attention blocks in a frozen LLM
# (the <image> markers stay in the text). Tiny sizes for a CPU.
_base_ = [
    '_base_/default_runtime.py',
    '_base_/encoders/tiny_vit.py',
    '_base_/llms/tiny_llama.py',
    '_base_/fusions/cross_attention.py',
    '_base_/data/synthetic.py',
    '_base_/schedules/cpu_short.py',
]

connector = dict(type='PerceiverResampler', num_latents=32, depth=2, num_heads=4, head_dim=48, mlp_ratio=2)
language_model = dict(train='frozen')  # Flamingo trains only the blocks and the connector
