"""Flamingo's gated cross-attention fusion: media masking, gates, freezing, generation with a KV cache, and
every connector with every fusion (its equivalence with open_flamingo's GatedCrossAttentionBlock is in
tests/test_equivalence.py)."""

import copy

import pytest
import torch

from vlkit.models.fusion import CrossAttentionFusion, GatedCrossAttentionBlock, MediaContext
from vlkit.registry import CONNECTORS, FUSIONS, LANGUAGE_MODELS, MODELS
from vlkit.testing import (
    TEXTS,
    TINY_CONNECTORS,
    TINY_FUSIONS,
    text_batch,
    tiny_language_model,
    tiny_model_cfg,
)

TOL = dict(atol=1e-5, rtol=1e-4)
XATTN = dict(type='CrossAttentionFusion', **TINY_FUSIONS['CrossAttentionFusion'])


def _registered(registry) -> list[str]:
    registry.import_from_location()
    return sorted(registry.module_dict)


def _build(root: str, connector: dict | None = None, fusion: dict = XATTN, seed: int = 0):
    torch.manual_seed(seed)
    return MODELS.build(tiny_model_cfg(root, connector=connector, fusion=fusion))


def _bare_language_model(root: str, model) -> torch.nn.Module:
    """A language model without cross-attention blocks, holding ``model``'s language-model weights."""
    bare = LANGUAGE_MODELS.build(tiny_language_model(root))
    bare.load_state_dict(model.language_model.state_dict())
    return bare.eval()


def _open_gates(model, value: float = 1.0) -> None:
    with torch.no_grad():
        for block in model.fusion.blocks:
            block.attn_gate.fill_(value)
            block.ff_gate.fill_(value)


def _marker_positions(batch, model, row: int) -> list[int]:
    return (batch['input_ids'][row] == model.language_model.image_token_id).nonzero()[:, 0].tolist()


# -- any connector, either fusion ------------------------------------------------------------------------


@pytest.mark.parametrize('fusion', _registered(FUSIONS))
@pytest.mark.parametrize('name', _registered(CONNECTORS))
def test_every_connector_trains_with_either_fusion(synthetic_root, name, fusion):
    model = _build(
        synthetic_root, dict(type=name, **TINY_CONNECTORS[name]), dict(type=fusion, **TINY_FUSIONS[fusion])
    ).train()
    batch = text_batch(model, TEXTS)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optim = torch.optim.AdamW(trainable.values(), lr=1e-2)
    for _ in range(3):
        optim.zero_grad()
        loss = model(**batch, mode='loss')['loss']
        assert loss.isfinite(), f'{name} + {fusion}: loss {loss.item()}'
        loss.backward()
        optim.step()
    # after the first step the gates are open, so every trainable weight gets a gradient
    bad = [
        n for n, p in trainable.items() if p.grad is None or not p.grad.isfinite().all() or not p.grad.any()
    ]
    assert not bad, f'{name} + {fusion}: trainable parameters without a finite, non-zero gradient: {bad}'


def test_a_batch_without_any_image_trains_the_feed_forwards(synthetic_root):
    model = _build(synthetic_root).train()
    _open_gates(model)
    batch = text_batch(model, [TEXTS[0]])
    assert batch['images'].shape[0] == 0
    loss = model(**batch, mode='loss')['loss']
    loss.backward()
    assert loss.isfinite() and all(block.ff[1].weight.grad.any() for block in model.fusion.blocks)
    assert all(block.attn.to_q.weight.grad is None for block in model.fusion.blocks)  # no image to attend


# -- gates, freezing, where the blocks sit ---------------------------------------------------------------


def test_logits_equal_the_bare_llm_at_init_and_not_after_one_step(synthetic_root):
    model = _build(synthetic_root).train()
    batch = text_batch(model, TEXTS)
    text = dict(input_ids=batch['input_ids'], attention_mask=batch['attention_mask'])
    bare_lm = _bare_language_model(synthetic_root, model)
    with torch.no_grad():
        bare = bare_lm.model(**text).logits
    fused = model(**batch, mode='tensor')
    torch.testing.assert_close(fused, bare, atol=0, rtol=0)

    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(**batch, mode='loss')['loss'].backward()
    optim.step()
    with torch.no_grad():
        after = model(**batch, mode='tensor')
    assert (after - bare).abs().max() > 1e-4, 'one optimiser step did not change the cross-attention model'
    # the step trained the blocks and the connector only: the frozen language model is still the bare one
    torch.testing.assert_close(_bare_language_model(synthetic_root, model).model(**text).logits, bare)


def test_a_language_model_call_outside_the_fusion_is_refused(synthetic_root):
    model = _build(synthetic_root)
    batch = text_batch(model, TEXTS)
    with pytest.raises(RuntimeError, match='ran outside CrossAttentionFusion.call_language_model'):
        model.language_model.model(input_ids=batch['input_ids'], attention_mask=batch['attention_mask'])
    inputs = model.fuse(batch['images'], batch['input_ids'], batch['attention_mask'])
    with pytest.raises(TypeError, match='needs the MediaContext'):
        model.fusion.call_language_model(
            model.language_model.model, type(inputs)(inputs.inputs_embeds, inputs.attention_mask)
        )


def test_language_model_frozen_by_default_and_blocks_trainable(synthetic_root):
    model = _build(synthetic_root)
    assert not any(p.requires_grad for p in model.language_model.parameters())
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(n.startswith(('connector.', 'fusion.blocks.')) for n in names)
    assert 'fusion.blocks.1.attn.to_kv.weight' in names  # every=1 on two layers: two blocks
    assert not any('blocks' in n for n, _ in model.language_model.named_parameters())  # owned once

    unfrozen = _build(synthetic_root, fusion=dict(XATTN, freeze_language_model=False))
    assert all(p.requires_grad for p in unfrozen.language_model.parameters())


def test_visual_dim_sets_the_connector_width_and_the_blocks_keys(synthetic_root):
    model = _build(synthetic_root, fusion=dict(XATTN, visual_dim=20))
    assert model.connector.out_dim == 20 and model.fusion.blocks[0].attn.to_kv.in_features == 20
    assert model(**text_batch(model, TEXTS), mode='loss')['loss'].isfinite()


def test_freezing_refuses_to_freeze_lora_adapters(synthetic_root):
    pytest.importorskip('peft')
    lora = dict(tiny_language_model(synthetic_root), train='lora', lora=dict(r=2, target_modules=['q_proj']))
    with pytest.raises(ValueError, match='set fusion.freeze_language_model=False'):
        CrossAttentionFusion().attach(LANGUAGE_MODELS.build(lora))
    llm = LANGUAGE_MODELS.build(lora)
    CrossAttentionFusion(freeze_language_model=False, num_heads=2, head_dim=8).attach(llm)
    trainable = [n for n, p in llm.named_parameters() if p.requires_grad]
    assert trainable and all('lora_' in n for n in trainable)


def test_blocks_sit_before_every_kth_layer(synthetic_root):
    llm = LANGUAGE_MODELS.build(tiny_language_model(synthetic_root))  # two decoder layers
    fusion = CrossAttentionFusion(every=2, num_heads=2, head_dim=8)
    fusion.attach(llm)
    assert fusion.layer_indices == [1] and len(fusion.blocks) == 1
    with pytest.raises(RuntimeError, match='already attached'):
        fusion.attach(llm)
    with pytest.raises(ValueError, match=r'fusion.every=3 exceeds the language model.s 2 layers'):
        CrossAttentionFusion(every=3).attach(llm)
    with pytest.raises(ValueError, match='fusion.every must be >= 1'):
        CrossAttentionFusion(every=0)


def test_gradient_checkpointing_gives_the_same_gradients(synthetic_root):
    grads = []
    for checkpointing in (False, True):
        model = _build(synthetic_root).train()
        if checkpointing:
            model.language_model.model.gradient_checkpointing_enable()
        _open_gates(model)
        model(**text_batch(model, TEXTS), mode='loss')['loss'].backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, **TOL, msg=name)


def test_a_deep_copy_runs_its_own_blocks(synthetic_root):
    model = _build(synthetic_root).eval()
    batch = text_batch(model, TEXTS)
    with torch.no_grad():
        before = model(**batch, mode='tensor')
        twin = copy.deepcopy(model)
        _open_gates(twin)
        assert (twin(**batch, mode='tensor') - before).abs().max() > 1e-4
        torch.testing.assert_close(model(**batch, mode='tensor'), before, atol=0, rtol=0)


# -- media masking ---------------------------------------------------------------------------------------


def _block_and_inputs():
    torch.manual_seed(0)
    block = GatedCrossAttentionBlock(16, kv_dim=12, num_heads=2, head_dim=8, ff_mult=2)
    with torch.no_grad():
        block.attn_gate.fill_(1.0)
        block.ff_gate.fill_(1.0)
    # one sample: 2 text tokens, image 1 at 2, text, image 2 at 5, text
    markers = torch.tensor([[0, 0, 1, 0, 0, 1, 0, 0]], dtype=torch.bool)
    return block, torch.randn(1, 8, 16), torch.randn(1, 2, 3, 12), markers.long().cumsum(1)


def test_block_attends_to_the_most_recent_image_only():
    block, x, media, index = _block_and_inputs()
    out = block(x, media, index)
    new_first, new_second = media.clone(), media.clone()
    new_first[:, 0] = torch.randn(3, 12)
    new_second[:, 1] = torch.randn(3, 12)
    out_first, out_second = block(x, new_first, index), block(x, new_second, index)
    # changing image 1 changes tokens 2..4 only; changing image 2 changes tokens 5.. only
    assert torch.equal(out_first[:, :2], out[:, :2]) and torch.equal(out_first[:, 5:], out[:, 5:])
    assert (out_first[:, 2:5] - out[:, 2:5]).abs().amin() > 0
    assert torch.equal(out_second[:, :5], out[:, :5]) and (out_second[:, 5:] - out[:, 5:]).abs().amin() > 0
    # before the first image the cross-attention adds nothing: the output is the gated feed-forward alone
    torch.testing.assert_close(out[:, :2], x[:, :2] + block.ff(x[:, :2]) * block.ff_gate.tanh())


def test_block_ignores_the_padding_of_shorter_images():
    block, x, media, index = _block_and_inputs()
    lengths = torch.tensor([[2, 3]])  # image 1 has two real tokens (any-resolution crops differ in length)
    out = block(x, media, index, lengths)
    padded, real = media.clone(), media.clone()
    padded[0, 0, 2] = torch.randn(12) * 10
    real[0, 0, 1] = torch.randn(12)
    torch.testing.assert_close(block(x, padded, index, lengths), out, atol=0, rtol=0)
    assert (block(x, real, index, lengths)[:, 2:5] - out[:, 2:5]).abs().amin() > 0


def test_model_logits_before_an_image_ignore_it(synthetic_root):
    """Changing image 2 of a sample changes no logit before its marker (nor another sample's); changing image
    1 changes the logits from its marker on. (Logits after marker 2 do depend on image 1, through the
    language model's self-attention to the tokens between the markers: the masking is per block, above.)"""
    model = _build(synthetic_root).eval()
    _open_gates(model)
    batch = text_batch(model, [TEXTS[2], TEXTS[1]])  # sample 0: images 0, 1, 2; sample 1: image 3
    first, second = _marker_positions(batch, model, 0)[:2]
    with torch.no_grad():
        logits = model(**batch, mode='tensor')
        for image, unchanged_until in ((1, second), (0, first)):
            changed = dict(batch, images=batch['images'].clone())
            changed['images'][image] = torch.randn_like(changed['images'][image])
            new = model(**changed, mode='tensor')
            torch.testing.assert_close(new[0, :unchanged_until], logits[0, :unchanged_until], atol=0, rtol=0)
            assert (new[0, unchanged_until] - logits[0, unchanged_until]).abs().max() > 1e-5
            torch.testing.assert_close(new[1], logits[1], **TOL)


# -- generation with a KV cache --------------------------------------------------------------------------


def test_cached_generation_equals_an_uncached_recompute(synthetic_root):
    model = _build(synthetic_root).eval()
    _open_gates(model, 2.0)
    prompts = text_batch(model, [TEXTS[2].rsplit(' ', 1)[0], TEXTS[1].rsplit(' ', 1)[0]], generating=True)
    answers = model(**prompts, mode='predict')
    assert len(answers) == 2 and all(isinstance(a['prediction'], str) for a in answers)

    steps = 3
    out = model.generate_ids(
        prompts['images'], prompts['input_ids'], prompts['attention_mask'],
        max_new_tokens=steps, min_new_tokens=steps, output_logits=True, return_dict_in_generate=True,
    )  # fmt: skip
    cached = torch.stack(out.logits, 1)  # [B, steps, vocab]
    ids = torch.cat([prompts['input_ids'], out.sequences[:, :-1]], 1)
    mask = torch.cat([prompts['attention_mask'], torch.ones_like(out.sequences[:, :-1])], 1)
    with torch.no_grad():
        uncached = model(prompts['images'], ids, mask, mode='tensor')[:, -steps:]
    torch.testing.assert_close(cached, uncached, atol=1e-4, rtol=1e-4)

    # the new tokens see the sample's last image
    last = dict(prompts, images=prompts['images'].clone())
    last['images'][2] = torch.randn_like(last['images'][2])  # sample 0's third image
    with torch.no_grad():
        changed = model(last['images'], ids, mask, mode='tensor')[:, -steps:]
    assert (changed[0] - uncached[0]).abs().max() > 1e-4
    torch.testing.assert_close(changed[1], uncached[1], **TOL)


def test_media_context_for_decoding_uses_each_samples_last_image():
    index = torch.tensor([[0, 1, 1, 2], [1, 1, 1, 1]])
    context = MediaContext(torch.zeros(2, 2, 3, 4), index)
    assert torch.equal(context.index_for(torch.zeros(2, 4, 8)), index)
    assert context.index_for(torch.zeros(2, 1, 8)).tolist() == [[2], [1]]
    with pytest.raises(ValueError, match='batch size 3'):
        context.index_for(torch.zeros(3, 1, 8))
