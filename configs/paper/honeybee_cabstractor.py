# Honeybee's C-Abstractor, also MM1's: 3 RegNet blocks, pooling of the 27 x 27 grid to 12 x 12 = 144 tokens,
# 3 more blocks (width 1024) and a 2-layer SiLU readout, on the same encoder and LLM as the BLIP-3 config.
_base_ = ['_base_/siglip_so400m_384.py', '_base_/phi3_mini.py']

connector = dict(type='CAbstractor', num_tokens=144, depth=3, hidden_dim=1024, mlp_depth=2)
fusion = dict(type='AutoregressiveFusion')
