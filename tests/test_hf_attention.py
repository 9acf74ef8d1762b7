"""transformers models inside vlkit attend through vlkit.ops.attention (vlkit.models.hf_parts): the same
outputs as transformers' own eager attention, padded or not, decoding with a cache, in encoders too."""

from __future__ import annotations

import pytest
import torch

from vlkit.models import hf_parts
from vlkit.models.hf_parts import HF_ATTENTION, attend_through_vlkit
from vlkit.models.llms import HFCausalLM
from vlkit.testing import tiny_language_model


@pytest.fixture
def attention_calls(monkeypatch) -> list[int]:
    """Counts the calls that reach vlkit's attention op from a transformers model."""
    calls, op = [], hf_parts.attention

    def counting(*args, **kwargs):
        calls.append(1)
        return op(*args, **kwargs)

    monkeypatch.setattr(hf_parts, 'attention', counting)
    return calls


def _llama_pair(**overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=50, pad_token_id=0, **overrides)  # fmt: skip
    torch.manual_seed(0)
    ours = attend_through_vlkit(LlamaForCausalLM(LlamaConfig(**config)).eval())
    theirs = LlamaForCausalLM(LlamaConfig(**config, attn_implementation='eager')).eval()
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize('padded', [False, True])
def test_a_grouped_query_llm_gives_eagers_logits(attention_calls, padded):
    ours, theirs = _llama_pair()
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.ones_like(ids)
    if padded:
        mask[0, :4] = 0  # left padding
        mask[1, 7:] = 0  # right padding
    with torch.no_grad():
        logits = ours(input_ids=ids, attention_mask=mask).logits
        expected = theirs(input_ids=ids, attention_mask=mask).logits
    assert ours.config._attn_implementation == HF_ATTENTION
    assert len(attention_calls) == 2  # one per layer
    keep = mask.bool()  # positions of padding see nothing: their logits mean nothing in either
    torch.testing.assert_close(logits[keep], expected[keep], atol=1e-5, rtol=0)


def test_decoding_with_the_cache_gives_eagers_tokens(attention_calls):
    ours, theirs = _llama_pair()
    ids = torch.randint(1, 50, (2, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6])
    settings = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert ours.generate(ids, **settings).tolist() == theirs.generate(ids, **settings).tolist()
    assert len(attention_calls) == 2 * 8  # the prompt, then one token at a time


def test_an_encoder_gives_eagers_tokens(attention_calls):
    from transformers import Dinov2Config, Dinov2Model

    config = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  image_size=28, patch_size=14)  # fmt: skip
    torch.manual_seed(0)
    ours = attend_through_vlkit(Dinov2Model(Dinov2Config(**config)).eval())
    theirs = Dinov2Model(Dinov2Config(**config, attn_implementation='eager')).eval()
    theirs.load_state_dict(ours.state_dict())
    images = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(images).last_hidden_state, theirs(images).last_hidden_state, atol=1e-5, rtol=0
        )
    assert len(attention_calls) == 2


def test_attention_dropout_in_training_stays_with_transformers_sdpa(attention_calls):
    from transformers import LlamaConfig, LlamaForCausalLM

    ours, _ = _llama_pair(attention_dropout=0.5)
    config = LlamaConfig(**{**ours.config.to_dict(), 'attn_implementation': 'sdpa'})
    theirs = LlamaForCausalLM(config)
    theirs.load_state_dict(ours.state_dict())
    ids = torch.randint(1, 50, (2, 7))
    outputs = []
    for model in (ours.train(), theirs.train()):
        torch.manual_seed(1)
        outputs.append(model(input_ids=ids).logits)
    assert not attention_calls  # vlkit's op has no dropout
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)


def test_vlkits_language_model_part_attends_through_vlkit(synthetic_root):
    settings = {k: v for k, v in tiny_language_model(synthetic_root).items() if k != 'type'}
    assert HFCausalLM(**settings).model.config._attn_implementation == HF_ATTENTION
