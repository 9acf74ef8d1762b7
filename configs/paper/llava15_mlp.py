# LLaVA-1.5's mlp2x_gelu projector: every one of the 729 visual tokens is kept (paper: CLIP ViT-L/336 and
# Vicuna; here the same encoder and LLM as the BLIP-3 config, so that only the connector differs).
_base_ = ['_base_/siglip_so400m_384.py', '_base_/phi3_mini.py']

connector = dict(type='MLPProjector', depth=2, act='gelu')
fusion = dict(type='AutoregressiveFusion')
