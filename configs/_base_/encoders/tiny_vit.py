# A ViT small enough for a CPU (64 px, 8 px patches -> an 8 x 8 token grid), pretrained once on the
# synthetic images with dense per-patch targets (the encoder_pretraining stage, run by tools/train.py
# before the model is built and cached under data_root/encoders/), then frozen like BLIP-3's SigLIP.
image_size = 64
vision_encoder = dict(
    type='TimmVisionEncoder',
    model_name='vit_tiny_patch16_224',
    model_kwargs=dict(
        img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=3, class_token=False, global_pool='avg'
    ),
)
encoder_pretraining = dict(iters=600, batch_size=64, lr=1e-3)
