# Flamingo: a gated cross-attention block (tanh gates at 0) before every 2nd decoder layer, 8 heads of 64 and
# a 4x feed-forward as in OpenFlamingo; each token attends to the visual tokens of its most recent <image>.
# The language model is frozen (freeze_language_model=True): only the blocks and the connector train.
fusion = dict(
    type='CrossAttentionFusion',
    every=2,
    gated=True,
    num_heads=8,
    head_dim=64,
    ff_mult=4,
    freeze_language_model=True,
)
