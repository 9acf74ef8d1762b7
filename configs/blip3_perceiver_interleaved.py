# BLIP-3 (xGen-MM) on interleaved few-shot documents: the default job's encoder, perceiver and LLM on the
# synthetic `interleaved` variant, 0-2 solved examples then a query per document, every image's perceiver
# tokens spliced into the text at its <image> marker (docs/data.md).
_base_ = [
    '_base_/default_runtime.py',
    '_base_/encoders/tiny_vit.py',
    '_base_/llms/tiny_llama.py',
    '_base_/data/synthetic_interleaved.py',
    '_base_/schedules/cpu_short.py',
]

connector = dict(type='PerceiverResampler', num_latents=32, depth=2, num_heads=4, head_dim=48, mlp_ratio=2)
fusion = dict(type='AutoregressiveFusion')
