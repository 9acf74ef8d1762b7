# VQAv2 val (v2_OpenEnded_mscoco_val2014_questions.json + v2_mscoco_val2014_annotations.json), converted by
#   python tools/prepare_data.py vqa v2_OpenEnded_mscoco_val2014_questions.json \
#       v2_mscoco_val2014_annotations.json \
#       --images coco --out data/vqav2
# The benchmark's metric and prompt, as tools/test.py --benchmark vqav2 sets them
# (vlkit.evaluation.benchmarks).
_benchmark = dict(
    type='PreparedShards',
    data_dir='data/vqav2',
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
val_evaluator = dict(type='BenchmarkVQAAccuracy', submission='vqa')
test_evaluator = val_evaluator
model_settings = dict(max_new_tokens=16)
