# VizWiz VQA val (Annotations/val.json + val/ images), converted by
#   python tools/prepare_data.py vizwiz Annotations/val.json --images val --out data/vizwiz
# The benchmark's metric and prompt, as tools/test.py --benchmark vizwiz sets them
# (vlkit.evaluation.benchmarks).
_benchmark = dict(
    type='PreparedShards',
    data_dir='data/vizwiz',
    mode='generate',
    template='chat',
    question_prompt="{question}\nWhen the provided information is insufficient, respond with 'Unanswerable'."
    '\nAnswer the question using a single word or phrase.',
    caption_prompt='',
    tokenizer=None,
    image_size=None,
    image_processor=None,
)
val_dataloader = dict(
    batch_size=32, num_workers=0, sampler=None, collate_fn=dict(type='vlkit.vlm_collate'), dataset=_benchmark
)
test_dataloader = val_dataloader
val_evaluator = dict(type='VizWizAccuracy', submission='vizwiz')
test_evaluator = val_evaluator
model_settings = dict(max_new_tokens=16)
