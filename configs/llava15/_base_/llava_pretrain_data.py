# LLaVA-Pretrain (LCS-558K: blip_laion_cc_sbu_558k.json + images) as caption shards (KEY.jpg + KEY.txt) in
# data/llava_pretrain (docs/data.md). LLaVA trains stage 1 on its `plain` template: the image, the caption,
# end of sequence, no question.
train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    sampler=None,
    collate_fn=dict(type='vlkit.vlm_collate'),
    dataset=dict(
        type='ConversationShards',
        shards='data/llava_pretrain/pretrain-{00000..00558}.tar',
        num_samples=558_128,
        tokenizer=None,
        image_size=None,
    ),
)
