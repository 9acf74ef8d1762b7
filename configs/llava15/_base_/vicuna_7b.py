# Vicuna-7B v1.5 (lmsys/vicuna-7b-v1.5), LLaVA-1.5's language model: a Llama-2 of width 4096, MLP 11008,
# 32 layers, 32 heads, vocabulary 32000, 4k context. `pretrained` and `tokenizer` name the checkpoint (found
# as docs/training.md says); profile-only builds use the `model` dict and a stand-in tokenizer of its
# vocabulary.
language_model = dict(
    type='HFCausalLM',
    model=dict(
        model_type='llama',
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
    tokenizer='lmsys/vicuna-7b-v1.5',
    pretrained='lmsys/vicuna-7b-v1.5',
    gradient_checkpointing=True,
)
