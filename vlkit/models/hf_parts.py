"""What the Hugging Face parts (vision towers, causal LMs) share."""

from __future__ import annotations

from collections.abc import Mapping

from ..pretrained import not_found_hint, resolve_pretrained


def architecture_only(part: str, cfg: Mapping) -> dict:
    """A Hugging Face part's config without its weights: ``pretrained`` dropped, and the architecture
    required as a config dict (a hub name or directory in ``model`` would be read to learn it)."""
    if isinstance(cfg.get('model'), str):
        raise ValueError(
            f'profile-only builds need the architecture as a config dict, but {part}.model is the '
            f'name {cfg["model"]!r}: write model=dict(model_type=..., ...) and pretrained={cfg["model"]!r}'
        )
    return {**cfg, 'pretrained': None}


def from_pretrained(auto_class, key: str, name: str, trust_remote_code: bool = False):
    """``auto_class.from_pretrained`` of a name or directory (:func:`vlkit.pretrained.resolve_pretrained`).

    Code shipped with a checkpoint runs only with ``trust_remote_code=True`` written in the config. A name
    found nowhere is refused naming the config key ``key`` and where a local copy would be looked for.
    """
    path = resolve_pretrained(name)
    try:
        return auto_class.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as err:
        if path != name:  # a local directory: its own error says what is wrong with it
            raise
        raise OSError(not_found_hint(key, name)) from err
