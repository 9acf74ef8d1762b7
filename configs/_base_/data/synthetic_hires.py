# The synthetic benchmark's `hires` variant (vlkit/data/synthetic.py): images at twice `image_size` whose
# printed word is too small to read once downscaled to `image_size`; generated on first use into
# data_root/variants/hires. Patch-wise any-resolution encoding: each image becomes a downscaled global view
# plus the grid of `image_size` crops (from `grids`, as (rows, cols)) that best fits its aspect ratio.
data_root = '{{$VLKIT_DATA_ROOT:data/synthetic}}'
_anyres = dict(grids=[(1, 1), (1, 2), (2, 1), (2, 2)], global_view=True)
_dataset = dict(
    type='SyntheticShards', variant='hires', anyres=_anyres, data_root=None, tokenizer=None, image_size=None
)
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=None,
    collate_fn=dict(type='vlkit.vlm_collate'),
    dataset=dict(_dataset, split='train', mode='train'),
)
val_dataloader = dict(
    batch_size=100,
    num_workers=0,
    sampler=None,
    collate_fn=dict(type='vlkit.vlm_collate'),
    dataset=dict(_dataset, split='val', mode='generate'),
)
test_dataloader = dict(val_dataloader, dataset=dict(_dataset, split='test', mode='generate'))
val_evaluator = dict(type='ExactMatchAccuracy')
test_evaluator = val_evaluator
