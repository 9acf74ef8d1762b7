# Idefics3: pixel shuffle merges each 2 x 2 patch of visual tokens into one (4x fewer tokens), then a
# Linear layer maps it into the LLM's embeddings. Tiny sizes for a CPU.
_base_ = ['_base_/default_runtime.py', '_base_/encoders/tiny_vit.py', '_base_/llms/tiny_llama.py',
          '_base_/data/synthetic.py', '_base_/schedules/cpu_short.py']  # fmt: skip

connector = dict(type='PixelShuffleProjector', factor=2, depth=1)
fusion = dict(type='AutoregressiveFusion')
