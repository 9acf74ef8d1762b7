# Phi-3-mini (microsoft/Phi-3-mini-4k-instruct), the language model of BLIP-3 (xGen-MM): width 3072, MLP
# 8192, 32 layers, 32 heads (no grouped keys), vocabulary 32064, 4k context. Built from these
# hyper-parameters without weights. `vocab_size_tokenizer` is a stand-in with the model's vocabulary size
# and an <image> token, enough to build and profile the model but not to read text: with the checkpoint at
# hand, set pretrained= and tokenizer= to 'microsoft/Phi-3-mini-4k-instruct' (or a local directory).
language_model = dict(
    type='HFCausalLM',
    model=dict(
        model_type='phi3',
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32064,
        max_position_embeddings=4096,
    ),
    tokenizer=dict(type='vocab_size_tokenizer', vocab_size=32064),
    train='full',
    pretrained=None,
)
