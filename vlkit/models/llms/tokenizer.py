"""Tokenizers for the language models: a name or local directory, or a registered builder function."""

from __future__ import annotations

from ...registry import FUNCTIONS

IMAGE_TOKEN = '<image>'


def build_tokenizer(spec: str | dict):
    """Builds a tokenizer and makes sure it has the ``<image>`` token and a padding token.

    Args:
        spec: a name or local directory for ``AutoTokenizer.from_pretrained``, or a dict whose ``type``
            names a function in the ``FUNCTIONS`` registry that returns a tokenizer (e.g.
            ``dict(type='synthetic_tokenizer', data_root=...)``).
    """
    if isinstance(spec, str):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(spec)
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
def synthetic_tokenizer(data_root: str | None = None, **data_kwargs):
    """The word-level tokenizer saved beside the synthetic benchmark (generating both if missing)."""
    from transformers import AutoTokenizer

    from ...data.prepare import ensure_synthetic_data

    root = ensure_synthetic_data(data_root, **data_kwargs)
    return AutoTokenizer.from_pretrained(str(root / 'tokenizer'))
