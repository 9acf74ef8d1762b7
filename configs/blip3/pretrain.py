# BLIP-3 (xGen-MM) stage 1, pretraining: SigLIP-so400m stays frozen; the Perceiver Resampler (128 latents)
# and Phi-3-mini train together on image-caption data (LLaVA-Pretrain here). The batch, steps and learning
# rates are this config's starting point on 8 GPUs, not the paper's (which pretrains on a far larger mixture).
#   python tools/train.py configs/blip3/pretrain.py                 -> work_dirs/pretrain/
_base_ = [
    '../_base_/default_runtime.py',
    '../paper/_base_/siglip_so400m_384.py',
    '../paper/_base_/phi3_mini.py',
    '../_base_/data/llava_pretrain.py',
]

vision_encoder = dict(pretrained='google/siglip-so400m-patch14-384', train='frozen')
connector = dict(
    type='PerceiverResampler', num_latents=128, depth=6, num_heads=16, head_dim=96, mlp_ratio=4, train='full'
)
language_model = dict(
    pretrained='microsoft/Phi-3-mini-4k-instruct',
    tokenizer='microsoft/Phi-3-mini-4k-instruct',
    train='full',
    gradient_checkpointing=True,
)
fusion = dict(type='AutoregressiveFusion')

_PER_GPU, _GPUS, _ACCUMULATE = 16, 8, 4
_EFFECTIVE_BATCH = _PER_GPU * _GPUS * _ACCUMULATE  # 512
_STEPS = 558_128 // _EFFECTIVE_BATCH
train_dataloader = dict(batch_size=_PER_GPU, num_workers=4)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=_STEPS * _ACCUMULATE)
optim_wrapper = dict(
    type='GuardedOptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-5, weight_decay=0.05),
    # per-part learning rates: the new resampler at 1e-4, twice the pretrained LLM's
    paramwise_cfg=dict(custom_keys={'connector.': dict(lr_mult=2.0)}),
    accumulative_counts=_ACCUMULATE,
    clip_grad=dict(max_norm=1.0),
)
_WARMUP = round(0.03 * _STEPS * _ACCUMULATE)  # 3% of the run
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=_WARMUP),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=_WARMUP, end=None),
]
default_hooks = dict(checkpoint=dict(interval=1000))
