"""What the Hugging Face parts (vision towers, causal LMs) share."""

from __future__ import annotations

from collections.abc import Mapping


def architecture_only(part: str, cfg: Mapping) -> dict:
    """A Hugging Face part's config without its weights: ``pretrained`` dropped, and the architecture
    required as a config dict (a hub name or directory in ``model`` would be read to learn it)."""
    if isinstance(cfg.get('model'), str):
        raise ValueError(
            f'profile-only builds need the architecture as a config dict, but {part}.model is the '
            f'name {cfg["model"]!r}: write model=dict(model_type=..., ...) and pretrained={cfg["model"]!r}'
        )
    return {**cfg, 'pretrained': None}
