# The default job trained on a mixture: half the benchmark's image-question pairs, half its interleaved
# few-shot documents (0-2 solved examples, then a query; docs/data.md). It is evaluated on the pairs'
# questions like the default, and `tools/test.py --shots K` draws its demonstrations from the training pairs
# (`few_shot_demonstrations`), not from the mixture. Finding (e) of docs/findings.md compares it with the
# default.
_base_ = [
    '_base_/default_runtime.py',
    '_base_/encoders/tiny_vit.py',
    '_base_/llms/tiny_llama.py',
    '_base_/data/synthetic.py',
    '_base_/schedules/cpu_short.py',
]

connector = dict(type='PerceiverResampler', num_latents=32, depth=2, num_heads=4, head_dim=48, mlp_ratio=2)
fusion = dict(type='AutoregressiveFusion')

_pairs = dict(
    type='SyntheticShards', split='train', mode='train', data_root=None, tokenizer=None, image_size=None
)
_sources = [
    dict(name='pairs', weight=1, dataset=_pairs),
    dict(name='interleaved', weight=1, dataset=dict(_pairs, variant='interleaved')),
]
train_dataloader = dict(dataset=dict(_delete_=True, type='MixtureDataset', sources=_sources, seed=0))
few_shot_demonstrations = _pairs
