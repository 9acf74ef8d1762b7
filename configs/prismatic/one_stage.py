# Prismatic VLMs (Karamcheti et al. 2024): one stage instead of two. Skipping LLaVA's alignment stage and
# training the projector from scratch together with the whole language model on the instruction data alone
# matched the two-stage recipe at a fraction of the compute ("no-align"). Same parts and instruction schedule
# as configs/llava15/stage2_finetune.py (lr 2e-5, batch 128, one epoch), but no load_parts: nothing before it.
#   python tools/train.py configs/prismatic/one_stage.py
_base_ = [
    '../_base_/default_runtime.py',
    '../llava15/_base_/clip_vit_l_336.py',
    '../llava15/_base_/vicuna_7b.py',
    '../_base_/data/llava_instruct.py',
]

vision_encoder = dict(train='frozen')
connector = dict(type='MLPProjector', depth=2, act='gelu', train='full')
language_model = dict(train='full')
fusion = dict(type='AutoregressiveFusion')

_PER_GPU, _GPUS, _ACCUMULATE = 16, 8, 1
_EFFECTIVE_BATCH = _PER_GPU * _GPUS * _ACCUMULATE  # 128
_STEPS = 665_298 // _EFFECTIVE_BATCH
train_dataloader = dict(
    batch_size=_PER_GPU, num_workers=4, dataset=dict(template='vicuna_v1')
)  # Vicuna's v1 format
train_cfg = dict(type='IterBasedTrainLoop', max_iters=_STEPS * _ACCUMULATE)
optim_wrapper = dict(
    type='GuardedOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-5, weight_decay=0.0),
    accumulative_counts=_ACCUMULATE,
    clip_grad=dict(max_norm=1.0),
)
_WARMUP = round(0.03 * _STEPS * _ACCUMULATE)  # 3% of the run
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=_WARMUP),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=_WARMUP, end=None),
]
default_hooks = dict(checkpoint=dict(interval=1000))
