# The synthetic benchmark's `interleaved` variant (vlkit/data/synthetic.py): few-shot interleaved documents
# (0-2 solved image-question-answer examples of one task, then a query of the same task; text before,
# between and after the images), generated on first use into data_root/variants/interleaved. Answers are
# the documents' targets: they carry the loss, and validation answers each document's query.
data_root = '{{$VLKIT_DATA_ROOT:data/synthetic}}'
_dataset = dict(
    type='SyntheticShards', variant='interleaved', data_root=None, tokenizer=None, image_size=None
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
