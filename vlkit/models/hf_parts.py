"""What the Hugging Face parts (vision towers, causal LMs) share."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch
from torch import nn

from ..ops import attention
from ..pretrained import not_found_hint, resolve_pretrained

HF_ATTENTION = 'vlkit'  # the name under which transformers' attention interface finds vlkit.ops.attention


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


def _attention_through_vlkit(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                             is_causal=None, **kwargs) -> tuple[torch.Tensor, None]:  # fmt: skip
    """transformers' attention interface over :func:`vlkit.ops.attention`: ``query [B, H, Lq, Dh]``,
    ``key``/``value [B, H_kv, Lk, Dh]`` and the boolean mask of transformers' ``sdpa_mask`` (``None`` when
    only causality or nothing is masked) in, ``[B, Lq, H, Dh]`` out. What vlkit's op does not compute
    (attention dropout, an additive bias, soft-capping) goes to transformers' own SDPA path."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    additive = attention_mask is not None and attention_mask.dtype != torch.bool
    if dropout or additive or kwargs.get('softcap') is not None or kwargs.get('position_bias') is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal,
            **kwargs,
        )  # fmt: skip
    groups = getattr(module, 'num_key_value_groups', 1)
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    if is_causal is None:
        is_causal = getattr(module, 'is_causal', True)
    causal = attention_mask is None and query.shape[2] > 1 and is_causal
    out = attention(query, key, value, attention_mask, causal=causal, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


@functools.cache
def _register_hf_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(HF_ATTENTION, _attention_through_vlkit)
    AttentionMaskInterface.register(HF_ATTENTION, sdpa_mask)


def attend_through_vlkit(model: nn.Module) -> nn.Module:
    """Routes a transformers model's attention through :func:`vlkit.ops.attention`, the one attention
    primitive (docs/architecture.md, Attention), where the model takes transformers' attention interface;
    a model that does not keeps its own."""
    if getattr(model, '_supports_attention_backend', False):
        _register_hf_attention()
        model.set_attn_implementation(HF_ATTENTION)
    return model
