# BLIP-3 (xGen-MM): a frozen pretrained encoder, a Perceiver Resampler, visual tokens spliced into a
# trained LLM. Tiny sizes for a CPU; the default job of the README.
_base_ = [
    '_base_/default_runtime.py',
    '_base_/encoders/tiny_vit.py',
    '_base_/llms/tiny_llama.py',
    '_base_/data/synthetic.py',
    '_base_/schedules/cpu_short.py',
]

connector = dict(type='PerceiverResampler', num_latents=32, depth=2, num_heads=4, head_dim=48, mlp_ratio=2)
fusion = dict(type='AutoregressiveFusion')
