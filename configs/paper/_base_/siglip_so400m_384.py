# SigLIP so400m-patch14-384 (google/siglip-so400m-patch14-384), the vision tower of BLIP-3 (xGen-MM) and
# Idefics2: width 1152, MLP 4304, 27 layers, 16 heads, 384 px images in 14 px patches -> a 27 x 27 grid of
# 729 tokens, taken after the final LayerNorm. Built from these hyper-parameters without weights; with the
# checkpoint at hand, set pretrained='google/siglip-so400m-patch14-384' (a name or a local directory).
image_size = 384
vision_encoder = dict(
    type='HFVisionEncoder',
    model=dict(
        model_type='siglip_vision_model',
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
        vision_use_head=False,  # the attention-pooling head makes one image embedding, which no VLM reads
    ),
    layer=None,
    pretrained=None,
)
