# LLaVA-1.5-mix665k (llava_v1_5_mix665k.json + its image folders) as instruction shards (KEY.jpg + KEY.json
# with "conversations") in data/llava_instruct (docs/data.md).
train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    sampler=None,
    collate_fn=dict(type='vlkit.vlm_collate'),
    dataset=dict(
        type='ConversationShards',
        shards='data/llava_instruct/instruct-{00000..00665}.tar',
        num_samples=665_298,
        tokenizer=None,
        image_size=None,
    ),
)
