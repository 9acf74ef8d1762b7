# BLIP-3 (xGen-MM) with the language model frozen: the default job, but the tiny Llama first learns the
# synthetic benchmark's text (the llm_pretraining stage, run by tools/train.py before the model is built and
# cached under data_root/llms/) and is then frozen, so only the perceiver trains, into a language model that
# already reads the questions and answers with the benchmark's words.
_base_ = [
    '_base_/default_runtime.py',
    '_base_/encoders/tiny_vit.py',
    '_base_/llms/tiny_llama.py',
    '_base_/data/synthetic.py',
    '_base_/schedules/cpu_short.py',
]

connector = dict(type='PerceiverResampler', num_latents=32, depth=2, num_heads=4, head_dim=48, mlp_ratio=2)
fusion = dict(type='AutoregressiveFusion')
language_model = dict(train='frozen')
llm_pretraining = dict(iters=150, batch_size=64, lr=2e-3)
