# A 4-layer Llama built from a config dict, with the word-level tokenizer trained on the synthetic corpus.
language_model = dict(
    type='HFCausalLM',
    model=dict(
        model_type='llama',
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
    ),
    tokenizer=dict(type='synthetic_tokenizer', data_root=None),
    train='full',
)
