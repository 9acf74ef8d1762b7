# Minutes on a 2-core CPU. `end=None` / no val_interval: filled with max_iters (vlkit.config).
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1500)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='GuardedOptimWrapper',  # drops non-finite steps; default_hooks.non_finite decides what then
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=50, end=None),
]
