# LLaVA-1.5: mlp2x_gelu per visual token.
connector = dict(type='MLPProjector', depth=2, act='gelu')
