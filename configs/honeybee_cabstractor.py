# Honeybee: the C-Abstractor (RegNet blocks, adaptive pooling, RegNet blocks) keeps locality while cutting
# the tiny encoder's 8 x 8 tokens to 4 x 4. Tiny sizes for a CPU.
_base_ = ['_base_/default_runtime.py', '_base_/encoders/tiny_vit.py', '_base_/llms/tiny_llama.py',
          '_base_/data/synthetic.py', '_base_/schedules/cpu_short.py']  # fmt: skip

connector = dict(type='CAbstractor', num_tokens=16, depth=2, hidden_dim=192, mlp_depth=2)
fusion = dict(type='AutoregressiveFusion')
