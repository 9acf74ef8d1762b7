# BLIP-2: a frozen pretrained encoder, a Q-Former whose 32 queries cross-attend to the visual tokens every
# second layer, its output projected into the LLM's embeddings. Tiny sizes for a CPU.
_base_ = ['_base_/default_runtime.py', '_base_/encoders/tiny_vit.py', '_base_/llms/tiny_llama.py',
          '_base_/data/synthetic.py', '_base_/schedules/cpu_short.py']  # fmt: skip

connector = dict(
    type='QFormer', num_queries=32, dim=192, depth=4, num_heads=4, mlp_dim=768, cross_attn_every=2
)
fusion = dict(type='AutoregressiveFusion')
