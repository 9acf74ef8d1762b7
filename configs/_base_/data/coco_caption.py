# COCO captions, Karpathy test split (dataset_coco.json), converted by
#   python tools/prepare_data.py karpathy dataset_coco.json --images coco --option splits=test --out \
#       data/coco_caption
# (or captions_val2017.json with the coco_captions format). CIDEr-D and BLEU-4.
# The benchmark's metric and prompt, as tools/test.py --benchmark coco_caption sets them
# (vlkit.evaluation.benchmarks).
_benchmark = dict(
    type='PreparedShards',
    data_dir='data/coco_caption',
    mode='generate',
    template='chat',
    question_prompt='{question}',
    caption_prompt='\nProvide a one-sentence caption for the provided image.',
    tokenizer=None,
    image_size=None,
    image_processor=None,
)
val_dataloader = dict(
    batch_size=32, num_workers=0, sampler=None, collate_fn=dict(type='vlkit.vlm_collate'), dataset=_benchmark
)
test_dataloader = val_dataloader
val_evaluator = dict(type='COCOCaption', submission='coco')
test_evaluator = val_evaluator
model_settings = dict(max_new_tokens=32)
