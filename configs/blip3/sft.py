# BLIP-3 (xGen-MM) stage 2, supervised fine-tuning: the resampler and Phi-3-mini continue from pretraining
# (load_parts names both) and train on instruction data; SigLIP stays frozen. HF LLaVA cannot express this
# model (its encoder is read after the final LayerNorm, layer=None, and its connector is a perceiver), so
# tools/export.py --to hf-llava refuses it; --to connector works.
#   python tools/train.py configs/blip3/sft.py                      -> work_dirs/sft/
_base_ = [
    '../_base_/default_runtime.py',
    '../paper/_base_/siglip_so400m_384.py',
    '../paper/_base_/phi3_mini.py',
    '../_base_/data/llava_instruct.py',
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
load_parts = dict(connector='work_dirs/pretrain', language_model='work_dirs/pretrain')

_PER_GPU, _GPUS, _ACCUMULATE = 8, 8, 2
_EFFECTIVE_BATCH = _PER_GPU * _GPUS * _ACCUMULATE  # 128
_STEPS = 665_298 // _EFFECTIVE_BATCH
train_dataloader = dict(batch_size=_PER_GPU, num_workers=4)
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
