# LLaVA-Pretrain-558K (blip_laion_cc_sbu_558k.json + images), converted by
#   python tools/prepare_data.py llava blip_laion_cc_sbu_558k.json --images LLaVA-Pretrain/images --out \
#       data/llava_pretrain
# Caption alignment as LLaVA's stage 1: the `plain` template (<image>, the caption, a newline), images as the
# encoder declares (CLIP: the shortest edge resized, the centre cropped; no padding). docs/data.md.
_dataset = dict(
    type='PreparedShards',
    data_dir='data/llava_pretrain',
    template='plain',
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
