"""Tiny presets of every built-in part, for tests, smoke checks and a plug-in's own tests (as
``mmengine.testing`` serves MMEngine's). Plain config dicts: building them takes a second on a CPU.

* ``TINY_CONNECTORS``, ``TINY_FUSIONS``, ``TINY_ENCODERS``: small hyper-parameters per registered name
  (vlkit's contract tests fail for a registered part without an entry);
* :func:`tiny_model_cfg`, :func:`tiny_options`, :func:`tiny_overrides`: a whole tiny model, and the overrides
  that shrink any experiment config to it;
* ``TEXTS`` and :func:`text_batch`: texts with 0, 1 and 3 images, and a tokenised batch of them with random
  images for a built model;
* :func:`byte_level_tokenizer`, :func:`chatml_tokenizer` and ``CHATML``: tokenizers that know a test's own
  words.
"""

from __future__ import annotations

import torch

from vlkit.models.fusion import DEFAULT_FUSION

TINY_SPLITS = {'train': 400, 'val': 60, 'test': 60}
TINY_IMAGE_SIZE = 32

# Small hyper-parameters per registered connector (a registered connector without an entry fails the
# coverage test in test_connectors.py).
TINY_CONNECTORS = {
    'LinearProjector': {},
    'MLPProjector': dict(depth=2),
    'PerceiverResampler': dict(num_latents=5, depth=2, num_heads=2, head_dim=8, mlp_ratio=2),
    'QFormer': dict(num_queries=3, dim=16, depth=3, num_heads=2, mlp_dim=24, cross_attn_every=2),
    'CAbstractor': dict(num_tokens=4, depth=1, hidden_dim=16, mlp_depth=2),
    'AvgPoolProjector': dict(num_tokens=4, depth=2),
    'PixelShuffleProjector': dict(factor=2, depth=2, norm=True),
}
# Per registered fusion (covered the same way, in test_fusion.py).
TINY_FUSIONS = {
    DEFAULT_FUSION: {},  # AutoregressiveFusion
    'CrossAttentionFusion': dict(every=1, num_heads=2, head_dim=8, ff_mult=2),
}


def tiny_encoder() -> dict:
    return dict(
        type='TimmVisionEncoder',
        model_name='vit_tiny_patch16_224',
        model_kwargs=dict(
            img_size=TINY_IMAGE_SIZE,
            patch_size=8,
            embed_dim=32,
            depth=1,
            num_heads=2,
            class_token=False,
            global_pool='avg',
        ),
    )


# Per registered vision encoder, a config of a tiny one at TINY_IMAGE_SIZE (covered in test_encoders.py).
TINY_ENCODERS = {
    'TimmVisionEncoder': tiny_encoder(),
    'HFVisionEncoder': dict(
        type='HFVisionEncoder',
        model=dict(
            model_type='siglip_vision_model',
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=TINY_IMAGE_SIZE,
            patch_size=8,
            vision_use_head=False,
        ),
    ),
}


def tiny_language_model(data_root: str) -> dict:
    return dict(
        type='HFCausalLM',
        model=dict(
            model_type='llama',
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
        ),
        tokenizer=dict(type='synthetic_tokenizer', data_root=data_root),
    )


def tiny_model_cfg(data_root: str, connector: dict | None = None, fusion: dict | None = None) -> dict:
    return dict(
        type='VisionLanguageModel',
        vision_encoder=tiny_encoder(),
        connector=connector or dict(type='MLPProjector'),
        language_model=tiny_language_model(data_root),
        fusion=fusion or dict(type=DEFAULT_FUSION),
        image_size=TINY_IMAGE_SIZE,
    )


def tiny_options(data_root: str, max_iters: int) -> dict:
    """Config overrides that shrink any experiment config to the tiny models and data (and turn its
    pretraining stages off)."""
    from vlkit.engine.stages import PRETRAINING_STAGES

    opts = {
        'data_root': data_root,
        'image_size': TINY_IMAGE_SIZE,
        'train_cfg.max_iters': max_iters,
        **dict.fromkeys(PRETRAINING_STAGES),
        'train_dataloader.batch_size': 8,
        'val_dataloader.batch_size': 30,
        'default_hooks.logger.interval': 5,
        'default_hooks.checkpoint.interval': max_iters,
    }
    opts.update({f'vision_encoder.model_kwargs.{k}': v for k, v in tiny_encoder()['model_kwargs'].items()})
    llm = tiny_language_model(data_root)['model']
    opts.update({f'language_model.model.{k}': v for k, v in llm.items() if k != 'model_type'})
    return opts


def tiny_overrides(data_root: str, work_dir: str, max_iters: int) -> list[str]:
    """The same as command-line arguments for the tools: ``--work-dir DIR --cfg-options k=v ...``."""
    return [
        '--work-dir',
        work_dir,
        '--cfg-options',
        *(f'{k}={v}' for k, v in tiny_options(data_root, max_iters).items()),
    ]


# Texts with 0, 1 and 3 ``<image>`` markers (text before, between and after images), each ending in its
# answer.
TEXTS = [
    'what colour is the shape ? red',
    '<image> what shape is it ? circle',
    'first <image> a red square <image> then <image> which is blue ? red',
]


def text_batch(model, texts: list[str], generating: bool = False, seed: int = 0) -> dict:
    """``texts`` (with ``<image>`` markers) tokenised by ``model``'s tokenizer, a random image per marker:
    right-padded with labels (every real text token), or left-padded prompts with ``generating``."""
    from .constants import IGNORE_INDEX

    tok = model.tokenizer
    ids = [tok(t, add_special_tokens=False).input_ids for t in texts]
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), tok.pad_token_id)
    attention_mask = torch.zeros(len(ids), width, dtype=torch.long)
    for row, seq in enumerate(ids):
        cols = slice(width - len(seq), width) if generating else slice(0, len(seq))
        input_ids[row, cols], attention_mask[row, cols] = torch.tensor(seq), 1
    image_token_id = model.language_model.image_token_id
    counts = (input_ids == image_token_id).sum(1)
    size = model.image_size
    images = torch.randn(int(counts.sum()), 3, size, size, generator=torch.Generator().manual_seed(seed))
    batch = dict(images=images, image_counts=counts, input_ids=input_ids, attention_mask=attention_mask)
    if not generating:
        labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
        batch['labels'] = labels.masked_fill(input_ids == image_token_id, IGNORE_INDEX)
    return batch


# ChatML (the turn format of Qwen2 and SmolLM2): the chat template of the tests' real-text tokenizers
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    '{% endif %}'
)


def byte_level_tokenizer(
    corpus: list[str],
    special_tokens: list[str],
    eos: str,
    bos: str | None = None,
    pad: str | None = None,
    chat_template: str | None = None,
    vocab_size: int = 600,
):
    """A byte-level BPE tokenizer (GPT-2 / Llama-3 style) trained on ``corpus``, with ``special_tokens``
    (``<image>`` among them), so that tests of real text use a tokenizer that knows their words. Every
    ``special_tokens`` entry is one token; ``chat_template`` is a Jinja chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from .constants import IMAGE_TOKEN

    specials = list(dict.fromkeys([*special_tokens, IMAGE_TOKEN, eos, *(t for t in (bos, pad) if t)]))
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(corpus, trainer)
    named = {eos, bos, pad}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        additional_special_tokens=[t for t in specials if t not in named],
    )
    tokenizer.chat_template = chat_template
    return tokenizer


def chatml_tokenizer(corpus: list[str]):
    """A :func:`byte_level_tokenizer` trained on ``corpus`` with ChatML's turn tokens and template."""
    return byte_level_tokenizer(
        corpus, special_tokens=['<|im_start|>'], eos='<|im_end|>', pad='<|endoftext|>', chat_template=CHATML
    )
