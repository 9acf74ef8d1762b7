# LLaVA: one Linear layer per visual token.
_base_ = [
    '_base_/default_runtime.py',
    '_base_/encoders/tiny_vit.py',
    '_base_/llms/tiny_llama.py',
    '_base_/data/synthetic.py',
    '_base_/schedules/cpu_short.py',
]

connector = dict(type='LinearProjector')
fusion = dict(type='AutoregressiveFusion')
