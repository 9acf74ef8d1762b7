# LLaVA-1.5-mix665k (llava_v1_5_mix665k.json + its image folders: coco, gqa, ocr_vqa, textvqa, vg),
# converted by
#   python tools/prepare_data.py llava llava_v1_5_mix665k.json --images playground/data --out \
#       data/llava_instruct --workers 8
# Conversations through the language model's own chat template (`chat`; `vicuna_v1` for LLaVA-1.5's Vicuna);
# images padded to a square in the mean colour first, as LLaVA-1.5's stage 2 (image_aspect_ratio='pad').
_dataset = dict(
    type='PreparedShards',
    data_dir='data/llava_instruct',
    template='chat',
    pad_to_square=True,
    tokenizer=None,
    image_size=None,
    image_processor=None,
)
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=None,
    collate_fn=dict(type='vlkit.vlm_collate'),
    dataset=dict(_dataset, mode='train'),
)
