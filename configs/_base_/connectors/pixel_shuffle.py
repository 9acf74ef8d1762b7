# Idefics3's pixel shuffle: 2 x 2 token patches merged into one token (4x fewer), one Linear layer.
connector = dict(type='PixelShuffleProjector', factor=2, depth=1)
