# Honeybee's C-Abstractor: 3 RegNet blocks before and after pooling, a 2-layer SiLU readout (paper: 144
# tokens from 24 x 24, width 1024; here 16 tokens from the tiny encoder's 8 x 8 grid, width 256).
connector = dict(type='CAbstractor', num_tokens=16, depth=3, hidden_dim=256, mlp_depth=2)
