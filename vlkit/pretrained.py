"""Where a pretrained name points: a local directory first, so that configs can name parts by hub name and
still run offline without editing a path.

``resolve_pretrained('openai/clip-vit-large-patch14-336')`` returns, in this order:

1. the name itself when it is an existing directory (``~`` expanded);
2. ``$VLKIT_WEIGHTS/NAME`` when that directory exists (default ``~/.cache/vlkit/weights``);
3. the name unchanged, for ``from_pretrained`` to find in the Hugging Face cache (or download, where the
   hub is reachable and ``HF_HUB_OFFLINE`` is not set).

Both sides of layer 3 use it (the language model's weights and the tokenizer the data pipelines build),
so it sits in the lowest layer.
"""

from __future__ import annotations

import os
import os.path as osp

WEIGHTS_ENV = 'VLKIT_WEIGHTS'
DEFAULT_WEIGHTS_ROOT = '~/.cache/vlkit/weights'


def weights_root() -> str:
    """Where local copies of pretrained parts live: ``$VLKIT_WEIGHTS`` or ``~/.cache/vlkit/weights``."""
    return osp.expanduser(os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_ROOT)


def resolve_pretrained(name: str) -> str:
    """A name or directory for ``from_pretrained`` (see the module docstring)."""
    path = osp.expanduser(name)
    if osp.isdir(path):
        return path
    local = osp.join(weights_root(), name)
    return local if osp.isdir(local) else name


def not_found_hint(key: str, name: str) -> str:
    """What to do when ``from_pretrained`` cannot find ``name`` (set at config key ``key``)."""
    return (
        f'{key}={name!r} is neither a local directory nor under {weights_root()} (${WEIGHTS_ENV}), and '
        'from_pretrained could not load it by name: put a copy at '
        f'{osp.join(weights_root(), name)}, or set {key} to its directory'
    )
