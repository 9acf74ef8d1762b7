# LLaVA-1.5: the mlp2x_gelu projector per visual token.
_base_ = [
    '_base_/default_runtime.py',
    '_base_/encoders/tiny_vit.py',
    '_base_/llms/tiny_llama.py',
    '_base_/data/synthetic.py',
    '_base_/schedules/cpu_short.py',
]

connector = dict(type='MLPProjector', depth=2)
fusion = dict(type='AutoregressiveFusion')
