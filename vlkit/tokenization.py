"""Tokenizers from a spec, shared by the language models and the data pipelines (docs/architecture.md).

A spec is a name or local directory for ``AutoTokenizer.from_pretrained``, or a dict whose ``type`` names a
function of the ``FUNCTIONS`` registry that returns a tokenizer. The data layer receives the language
model's spec and builds the same tokenizer, so neither layer imports the other.
"""

from __future__ import annotations

from .constants import IMAGE_TOKEN
from .pretrained import resolve_pretrained
from .registry import FUNCTIONS


def build_tokenizer(spec: str | dict):
    """Builds a tokenizer and makes sure it has the ``<image>`` token and a padding token.

    Args:
        spec: a name or local directory for ``AutoTokenizer.from_pretrained`` (found as
            :func:`vlkit.pretrained.resolve_pretrained` says), or a dict whose ``type``
            names a function in the ``FUNCTIONS`` registry that returns a tokenizer (e.g.
            ``dict(type='synthetic_tokenizer', data_root=...)``).
    """
    if isinstance(spec, str):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(spec))
    elif isinstance(spec, dict) and 'type' in spec:
        tokenizer = FUNCTIONS.build(dict(spec))
    else:
        raise TypeError(f'tokenizer must be a name, a local path or a dict with "type"; got {spec!r}')
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@FUNCTIONS.register_module()
def vocab_size_tokenizer(vocab_size: int):
    """A stand-in tokenizer with ``vocab_size`` entries (``<unk>``, ``<s>``, ``</s>``, ``<image>``, then
    placeholders), for building a published language model's architecture without downloading its
    tokenizer (profiling). It encodes no real text; set the model's own tokenizer to train or generate."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    special = ['<unk>', '<s>', '</s>', IMAGE_TOKEN]
    if vocab_size < len(special):
        raise ValueError(f'vocab_size_tokenizer needs vocab_size >= {len(special)}, got {vocab_size}')
    words = special + [f'<placeholder_{i}>' for i in range(len(special), vocab_size)]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token='<unk>'))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token='<unk>',
        bos_token='<s>',
        eos_token='</s>',
        additional_special_tokens=[IMAGE_TOKEN],
    )
