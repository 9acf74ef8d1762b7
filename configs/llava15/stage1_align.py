# LLaVA-1.5 stage 1, feature alignment: only the mlp2x_gelu projector trains (CLIP ViT-L/336 and Vicuna-7B
# frozen), on 558K image-caption pairs, one epoch, lr 1e-3 with 3% warmup and a cosine decay, batch 256.
#   python tools/train.py configs/llava15/stage1_align.py          -> work_dirs/stage1_align/
# Stage 2 (stage2_finetune.py, stage2_finetune_lora.py) starts from this run's projector (load_parts).
_base_ = [
    '../_base_/default_runtime.py',
    '_base_/clip_vit_l_336.py',
    '_base_/vicuna_7b.py',
    '../_base_/data/llava_pretrain.py',
]

vision_encoder = dict(train='frozen')
connector = dict(type='MLPProjector', depth=2, act='gelu', train='full')
language_model = dict(train='frozen')
fusion = dict(type='AutoregressiveFusion')

# The effective batch of 256 = per-GPU batch x GPUs x accumulated steps; on fewer GPUs raise _ACCUMULATE
# (or the per-GPU batch) so that the product stays 256. Iterations count per-GPU batches.
_PER_GPU, _GPUS, _ACCUMULATE = 32, 8, 1
_EFFECTIVE_BATCH = _PER_GPU * _GPUS * _ACCUMULATE  # 256
_STEPS = 558_128 // _EFFECTIVE_BATCH  # one epoch: 2180 optimizer steps
train_dataloader = dict(batch_size=_PER_GPU, num_workers=4)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=_STEPS * _ACCUMULATE)
optim_wrapper = dict(
    type='GuardedOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0),
    accumulative_counts=_ACCUMULATE,
    clip_grad=dict(max_norm=1.0),
)
_WARMUP = round(0.03 * _STEPS * _ACCUMULATE)  # 3% of the run
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=_WARMUP),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=_WARMUP, end=None),
]
default_hooks = dict(checkpoint=dict(interval=500))
