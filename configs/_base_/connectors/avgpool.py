# MM1's average-pooling connector, pooled to the same 16 tokens as c_abstractor.py, with an mlp2x_gelu.
connector = dict(type='AvgPoolProjector', num_tokens=16, depth=2)
