# LLaVA-1.5-style instruction tuning on real data prepared by tools/prepare_data.py (docs/data.md): the
# mlp2x_gelu projector trained on LLaVA-1.5-mix665k (data/llava_instruct), validated on VQAv2 (data/vqav2),
# conversations in LLaVA-1.5's Vicuna v1 template. The encoder and language model here are vlkit's tiny ones;
# for a real run set them to pretrained parts (configs/paper/_base_/) and `language_model.tokenizer` to the
# model's own tokenizer (a local directory): the synthetic word-level tokenizer knows no real words.
_base_ = [
    '_base_/default_runtime.py',
    '_base_/encoders/tiny_vit.py',
    '_base_/llms/tiny_llama.py',
    '_base_/data/llava_instruct.py',
    '_base_/data/vqav2.py',
    '_base_/schedules/cpu_short.py',
]

connector = dict(type='MLPProjector', depth=2, act='gelu')
fusion = dict(type='AutoregressiveFusion')
_template = 'vicuna_v1'  # or 'chat': the tokenizer's own chat template
train_dataloader = dict(dataset=dict(template=_template))
val_dataloader = dict(dataset=dict(template=_template))
test_dataloader = dict(dataset=dict(template=_template))
encoder_pretraining = None  # the synthetic scenes teach nothing about photos: use a pretrained encoder
