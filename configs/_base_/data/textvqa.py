# TextVQA val (TextVQA_0.5.1_val.json [+ TextVQA_Rosetta_OCR_v0.2_val.json]), converted by
#   python tools/prepare_data.py textvqa TextVQA_0.5.1_val.json TextVQA_Rosetta_OCR_v0.2_val.json \
#       --images train_images \
#       --out data/textvqa
# Without the OCR tokens in the prompt (tools/test.py --ocr-tokens puts them in: LLaVA-1.5's setting).
# The benchmark's metric and prompt, as tools/test.py --benchmark textvqa sets them
# (vlkit.evaluation.benchmarks).
_benchmark = dict(
    type='PreparedShards',
    data_dir='data/textvqa',
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
# answers processed as EvalAI's processor does, as LLaVA and lmms-eval score TextVQA (vlkit.evaluation.vqa)
val_evaluator = dict(type='BenchmarkVQAAccuracy', submission='vqa', answer_processing='evalai')
test_evaluator = val_evaluator
model_settings = dict(max_new_tokens=16)
