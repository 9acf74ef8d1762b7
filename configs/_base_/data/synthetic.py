# The synthetic benchmark (vlkit/data/synthetic.py), generated on first use into data_root.
data_root = '{{$VLKIT_DATA_ROOT:data/synthetic}}'
_dataset = dict(type='SyntheticShards', data_root=None, tokenizer=None, image_size=None)
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
