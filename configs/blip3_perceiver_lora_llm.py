# BLIP-3 (xGen-MM) with LoRA in the language model: blip3_perceiver_frozen_llm.py, but the pretrained tiny
# Llama learns through LoRA adapters (PEFT's defaults, in every Linear layer but the output head) beside the
# perceiver. Both configs share one llm_pretraining result: its cache key leaves out the part's train mode.
_base_ = [
    '_base_/default_runtime.py',
    '_base_/encoders/tiny_vit.py',
    '_base_/llms/tiny_llama.py',
    '_base_/data/synthetic.py',
    '_base_/schedules/cpu_short.py',
]

connector = dict(type='PerceiverResampler', num_latents=32, depth=2, num_heads=4, head_dim=48, mlp_ratio=2)
fusion = dict(type='AutoregressiveFusion')
language_model = dict(train='lora')
llm_pretraining = dict(iters=150, batch_size=64, lr=2e-3)
