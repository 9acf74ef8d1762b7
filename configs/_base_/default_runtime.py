default_scope = 'vlkit'
log_level = 'INFO'
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    non_finite=dict(type='NonFiniteGuardHook', action='raise'),  # or 'skip': drop NaN steps, count them
    # bad samples by reason -> log + data_skips.json; stop when over max_skip_rate (None: never)
    data_skips=dict(type='DataSkipsHook', interval=50, max_skip_rate=0.2, min_samples=200),
    rng_state=dict(type='RNGStateHook'),  # random states saved in checkpoints, restored on resume
    checkpoint=dict(
        type='AtomicCheckpointHook', by_epoch=False, interval=500, max_keep_ckpts=3, save_last=True
    ),
)
custom_hooks = [dict(type='AccuracyTableHook')]
visualizer = dict(
    type='Visualizer', vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
)
log_processor = dict(by_epoch=False, window_size=50)
load_from = None
resume = False
