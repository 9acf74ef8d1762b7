# CLIP ViT-L/14 at 336 px (openai/clip-vit-large-patch14-336), LLaVA-1.5's vision tower: width 1024, MLP
# 4096, 24 layers, 16 heads, 14 px patches -> a 24 x 24 grid of 576 tokens, read at the second-to-last layer
# (hidden_states[-2], CLS dropped) as LLaVA does. `pretrained` names the weights: a local directory, a copy
# under $VLKIT_WEIGHTS/openai/clip-vit-large-patch14-336, or the Hugging Face cache (docs/training.md); the
# `model` dict is the architecture, which profile-only builds use without reading any file.
image_size = 336
vision_encoder = dict(
    type='HFVisionEncoder',
    model=dict(
        model_type='clip_vision_model',
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
    ),
    layer=-2,
    pretrained='openai/clip-vit-large-patch14-336',
    train='frozen',
)
