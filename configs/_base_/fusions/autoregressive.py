# Fully autoregressive fusion (LLaVA, MM1, Idefics2, BLIP-3): each <image> marker is replaced by that
# image's visual tokens in the language model's input.
fusion = dict(type='AutoregressiveFusion')
