# GQA test-dev balanced (testdev_balanced_questions.json), converted by
#   python tools/prepare_data.py gqa testdev_balanced_questions.json --images gqa/images --out data/gqa
# The benchmark's metric and prompt, as tools/test.py --benchmark gqa sets them (vlkit.evaluation.benchmarks).
_benchmark = dict(
    type='PreparedShards',
    data_dir='data/gqa',
    mode='generate',
    template='chat',
    question_prompt='{question}\nAnswer the question using a single word or phrase.',
    caption_prompt='',
    tokenizer=None,
    image_size=None,
    image_processor=None,
)
val_dataloader = dict(
    batch_size=32, num_workers=0, sampler=None, collate_fn=dict(type='vlkit.vlm_collate'), dataset=_benchmark
)
test_dataloader = val_dataloader
val_evaluator = dict(type='GQAAccuracy', submission='gqa')
test_evaluator = val_evaluator
model_settings = dict(max_new_tokens=16)
