"""Each built-in connector, and the cross-attention block, against the reference implementation it
re-implements (docs/architecture.md, "Reference implementations").

The reference is built at tiny hyper-parameters with random weights (benchmarks/references.py builds the
references, and a reference that does not import fails its test), its state dict is converted with
``vlkit.convert.convert_state_dict`` and loaded with ``strict=True`` into the vlkit module built with the
same hyper-parameters, and both see the same inputs (fp32).
"""

import pytest
import torch
from torch import nn

from benchmarks.references import (
    HoneybeeCAbstractor,
    llava_projector,
    open_flamingo_gated_block,
    open_flamingo_perceiver,
)
from vlkit.convert import SOURCES, convert_state_dict
from vlkit.models.fusion import GatedCrossAttentionBlock, MediaContext
from vlkit.registry import CONNECTORS

TOL = dict(atol=1e-5, rtol=1e-4)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _perturb(module: nn.Module) -> nn.Module:
    """Moves every parameter off its initial value (zero biases, unit norms), so that each one matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return module.eval()


def _converted(source: str, state_dict: dict, name: str, **kwargs) -> nn.Module:
    connector = CONNECTORS.build(dict(type=name, **kwargs))
    connector.load_state_dict(convert_state_dict(source, state_dict), strict=True)
    return connector.eval()


def _padded(b: int = 2, n: int = 12, dim: int = 24, real: int = 7):
    """Visual tokens [b, n, dim] and a mask whose last sample has only ``real`` real tokens."""
    x = torch.randn(b, n, dim)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[-1, real:] = False
    return x, mask


# -- LLaVA ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize('depth', [2, 3])
def test_mlp_projector_matches_llava(depth):
    ref = _perturb(llava_projector(24, 40, depth))
    ours = _converted('llava.mlp', ref.state_dict(), 'MLPProjector', in_dim=24, out_dim=40, depth=depth)
    x = torch.randn(2, 9, 24)
    torch.testing.assert_close(ours(x), ref(x), **TOL)


def test_mlp_projector_matches_transformers_llava():
    from transformers import LlavaConfig
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    cfg = LlavaConfig(
        vision_config=dict(model_type='clip_vision_model', hidden_size=24, num_attention_heads=2),
        text_config=dict(model_type='llama', hidden_size=40, num_attention_heads=2),
        projector_hidden_act='gelu',
    )
    ref = _perturb(LlavaMultiModalProjector(cfg))
    ours = _converted('hf.llava', ref.state_dict(), 'MLPProjector', in_dim=24, out_dim=40, depth=2)
    x = torch.randn(2, 9, 24)
    torch.testing.assert_close(ours(x), ref(x), **TOL)


# -- BLIP-2 / InstructBLIP -----------------------------------------------------------------------------


_VISION = dict(
    hidden_size=24,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    image_size=16,
    patch_size=8,
)
_QFORMER_CFG = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=48,
    cross_attention_frequency=2,
)
_OPT = dict(
    model_type='opt', hidden_size=40, num_hidden_layers=1, ffn_dim=48, num_attention_heads=2, vocab_size=100,
    word_embed_proj_dim=40,
)  # fmt: skip
_QFORMER = dict(
    in_dim=24, out_dim=40, num_queries=5, dim=32, depth=3, num_heads=4, mlp_dim=48, cross_attn_every=2
)


def _blip2():
    """A tiny transformers ``Blip2Model``: vision 24 wide, Q-Former 32 wide with 5 queries, OPT 40 wide."""
    from transformers import Blip2Config, Blip2Model

    cfg = Blip2Config(
        vision_config=_VISION, qformer_config=_QFORMER_CFG, text_config=_OPT, num_query_tokens=5
    )
    return _perturb(Blip2Model._from_config(cfg, attn_implementation='eager'))


@pytest.mark.parametrize('num_tokens', [12, 64])  # few tokens: keys projected; many: queries' side
def test_qformer_matches_transformers_blip2_with_padding(num_tokens):
    ref = _blip2()
    ours = _converted('hf.blip2', ref.state_dict(), 'QFormer', **_QFORMER)
    x, mask = _padded(n=num_tokens)
    queries = torch.zeros(1, _QFORMER['num_queries'], _QFORMER['dim'])
    assert ours.layers[0].cross_attn.attends_in_context_space(queries, x) == (num_tokens == 64)
    with torch.no_grad():
        queries = ref.query_tokens.expand(x.shape[0], -1, -1)
        hidden = ref.qformer(
            query_embeds=queries, encoder_hidden_states=x, encoder_attention_mask=mask.long()
        )
        expected = ref.language_projection(hidden.last_hidden_state)
        torch.testing.assert_close(ours(x, mask), expected, **TOL)


def test_instruction_aware_qformer_matches_transformers_instructblip():
    # InstructBLIP: the instruction's embeddings follow the queries through the Q-Former's LayerNorm and
    # self-attention, and BERT's own feed-forward (``intermediate``/``output``) processes them.
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration

    qformer_cfg = dict(_QFORMER_CFG, vocab_size=50, max_position_embeddings=16)
    cfg = InstructBlipConfig(
        vision_config=_VISION, qformer_config=qformer_cfg, text_config=_OPT, num_query_tokens=5
    )
    ref = _perturb(InstructBlipForConditionalGeneration._from_config(cfg, attn_implementation='eager'))
    ours = _converted('hf.instructblip', ref.state_dict(), 'QFormer', instruction_aware=True, **_QFORMER)
    x, mask = _padded()
    ids, id_mask = torch.randint(1, 50, (2, 6)), torch.ones(2, 6, dtype=torch.bool)
    id_mask[0, 4:] = False
    with torch.no_grad():
        queries = ref.query_tokens.expand(x.shape[0], -1, -1)
        hidden = ref.qformer(
            input_ids=ids,
            attention_mask=torch.cat([torch.ones(2, 5, dtype=torch.long), id_mask.long()], dim=1),
            query_embeds=queries,
            encoder_hidden_states=x,
            encoder_attention_mask=mask.long(),
        )
        expected = ref.language_projection(hidden.last_hidden_state[:, : queries.shape[1]])
        embed = ref.qformer.embeddings  # the instruction's word + position embeddings are the caller's
        instruction = embed.word_embeddings(ids) + embed.position_embeddings(torch.arange(6))
        torch.testing.assert_close(
            ours(x, mask, instruction=instruction, instruction_mask=id_mask), expected, **TOL
        )


# -- Flamingo / BLIP-3 ---------------------------------------------------------------------------------

_PERCEIVER = dict(depth=2, head_dim=8, num_heads=3, num_latents=5, mlp_ratio=2)


def _open_flamingo_perceiver(projection_dim: int | None = None):
    return _perturb(open_flamingo_perceiver(24, projection_dim=projection_dim, **_PERCEIVER))


def _ours_perceiver(source: str, state_dict: dict, out_dim: int | None, **kwargs) -> nn.Module:
    connector = CONNECTORS.build(dict(type='PerceiverResampler', in_dim=24, out_dim=out_dim, **_PERCEIVER))
    connector.load_state_dict(convert_state_dict(source, state_dict, **kwargs), strict=True)
    return connector.eval()


def _assert_perceiver_equal(ours: nn.Module, reference) -> None:
    """Equal outputs, and a padded sample equals the reference run on its real tokens only (the padding
    mask of BLIP-3's perceiver; open_flamingo's takes no mask)."""
    x, mask = _padded()
    real = int(mask[-1].sum())
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), **TOL)
        torch.testing.assert_close(ours(x, mask)[-1:], reference(x[-1:, :real]), **TOL)


def test_perceiver_matches_open_flamingo():
    ref = _open_flamingo_perceiver()
    ours = _ours_perceiver('open_flamingo.perceiver', ref.state_dict(), out_dim=None)
    _assert_perceiver_equal(ours, lambda x: ref(x[:, None, None])[:, 0])


def test_perceiver_matches_blip3_with_projection_from_a_whole_checkpoint():
    # BLIP-3 (xGen-MM): open_flamingo's perceiver with a ``projection`` Linear after the final norm; in the
    # released checkpoint it sits under ``vlm.vision_tokenizer.`` next to the encoder and the LLM.
    ref = _open_flamingo_perceiver(projection_dim=40)
    checkpoint = {f'vlm.vision_tokenizer.{k}': v for k, v in ref.state_dict().items()}
    checkpoint['vlm.lang_model.lm_head.weight'] = torch.zeros(3, 40)
    ours = _ours_perceiver('xgen_mm.perceiver', checkpoint, out_dim=40, prefix='vlm.vision_tokenizer.')
    _assert_perceiver_equal(ours, lambda x: ref.projection(ref(x[:, None, None])[:, 0]))


# -- Honeybee ------------------------------------------------------------------------------------------


@pytest.mark.parametrize('depth', [2, 0])
def test_c_abstractor_matches_honeybee_on_a_non_square_grid(depth):
    grid = (3, 5)
    ref = _perturb(HoneybeeCAbstractor(24, 32, 40, depth=depth, mlp_depth=2, grid=grid, side=2))
    args = dict(in_dim=24, out_dim=40, input_grid=grid, num_tokens=4, depth=depth, hidden_dim=32, mlp_depth=2)
    ours = _converted('honeybee.c_abstractor', ref.state_dict(), 'CAbstractor', **args)
    x = torch.randn(2, 15, 24)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, None, grid), ref(x), **TOL)


# -- Idefics3 ------------------------------------------------------------------------------------------


def test_pixel_shuffle_matches_idefics3_connector():
    from transformers import Idefics3Config
    from transformers.models.idefics3.modeling_idefics3 import Idefics3Connector

    cfg = Idefics3Config(
        vision_config=dict(hidden_size=24, num_attention_heads=2),
        text_config=dict(model_type='llama', hidden_size=40, num_attention_heads=2),
        scale_factor=2,
    )
    ref = _perturb(Idefics3Connector(cfg))
    ours = CONNECTORS.build(
        dict(type='PixelShuffleProjector', in_dim=24, out_dim=40, factor=2, depth=1)
    ).eval()
    with torch.no_grad():  # Idefics3's projection has no bias
        ours.net[0].weight.copy_(ref.modality_projection.proj.weight)
        ours.net[0].bias.zero_()
        x = torch.randn(2, 16, 24)
        torch.testing.assert_close(ours(x, None, (4, 4)), ref(x), **TOL)


def test_llava_projector_files_convert_as_llava_saves_them():
    """mm_projector.bin keeps the projector's place in the model (``model.mm_projector.0.weight``), beside
    LoRA adapters under ``base_model.model.``; ``mm_projector_type='linear'`` is one Linear."""
    ref = _perturb(llava_projector(24, 40, 2))
    x = torch.randn(2, 9, 24)
    for path in ('model.mm_projector.', 'base_model.model.model.mm_projector.'):
        saved = {path + k: v.half() for k, v in ref.state_dict().items()}  # saved in fp16
        ours = _converted('llava.mlp', saved, 'MLPProjector', in_dim=24, out_dim=40, depth=2)
        torch.testing.assert_close(ours(x), ref(x), atol=1e-2, rtol=1e-2)
    linear = _perturb(nn.Linear(24, 40))
    saved = {'model.mm_projector.' + k: v for k, v in linear.state_dict().items()}
    ours = _converted('llava.mlp', saved, 'MLPProjector', in_dim=24, out_dim=40, depth=1)
    torch.testing.assert_close(ours(x), linear(x), **TOL)


def test_lavis_blip2_checkpoint_converts_to_the_transformers_one():
    """A LAVIS checkpoint ({'model': ...}, LAVIS's key names, its vision encoder and OPT beside) gives the
    same connector weights as transformers' Blip2Model with the same values."""
    state = _blip2().state_dict()
    lavis = {'query_tokens': state['query_tokens'], 'visual_encoder.blocks.0.attn.qkv.weight': torch.zeros(3)}
    lavis.update({'ln_vision.weight': torch.ones(24), 'opt_model.lm_head.weight': torch.zeros(2)})
    lavis.update({'Qformer.cls.predictions.bias': torch.zeros(2), 'Qformer.bert.embeddings.position_ids': 0})
    names = {  # transformers' name -> LAVIS's (lavis/models/blip2_models/Qformer.py, blip2_opt.py)
        'qformer.layernorm.': 'Qformer.bert.embeddings.LayerNorm.',
        'language_projection.': 'opt_proj.',
        'attention.attention.': 'attention.self.',
        'crossattention.attention.': 'crossattention.self.',
        'qformer.encoder.': 'Qformer.bert.encoder.',
    }
    for key, value in state.items():
        if key.startswith(('qformer.', 'language_projection.')):
            for hf, theirs in names.items():
                key = key.replace(hf, theirs)
            lavis[key] = value
    assert 'Qformer.bert.encoder.layer.0.crossattention.self.key.weight' in lavis
    assert 'Qformer.bert.encoder.layer.1.output_query.LayerNorm.bias' in lavis and 'opt_proj.weight' in lavis
    converted = convert_state_dict('lavis.blip2', {'model': lavis})
    expected = convert_state_dict('hf.blip2', state)
    assert converted.keys() == expected.keys()
    assert all(torch.equal(converted[k], expected[k]) for k in expected)


def test_an_old_honeybee_position_embedding_loses_its_cls_row():
    ref = HoneybeeCAbstractor(24, 32, 40, depth=1, mlp_depth=2, grid=(4, 4), side=2)
    state = ref.state_dict()
    old = dict(state, pos_emb=torch.cat([torch.randn(1, 1, state['pos_emb'].shape[-1]), state['pos_emb']], 1))
    assert old['pos_emb'].shape[1] == 17  # 4 x 4 + the CLS token's row
    converted = convert_state_dict('honeybee.c_abstractor', old)
    assert torch.equal(converted['pos_emb'], state['pos_emb'][0])


def test_a_wrapped_checkpoint_is_unwrapped_and_an_empty_match_shows_the_keys_found():
    ref = _open_flamingo_perceiver()
    state = {'module.perceiver.' + k: v for k, v in ref.state_dict().items()}  # DeepSpeed / DDP
    saved = {'epoch': 3, 'model_state_dict': state, 'optimizer_state_dict': {}}  # open_flamingo's training
    converted = convert_state_dict('open_flamingo.perceiver', saved, prefix='perceiver.')
    assert torch.equal(converted['latents'], ref.state_dict()['latents'])
    with pytest.raises(KeyError, match=r'under prefix .*vision.*any key \(found \[.*perceiver\.latents'):
        convert_state_dict('open_flamingo.perceiver', state, prefix='vision.')


# -- the conversion itself -----------------------------------------------------------------------------


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown conversion source 'hf\.blip3'.*'hf\.blip2'"):
        convert_state_dict('hf.blip3', {})
    known = {
        'llava.mlp',
        'hf.llava',
        'hf.blip2',
        'open_flamingo.perceiver',
        'xgen_mm.perceiver',
        'honeybee.c_abstractor',
    }
    assert known <= set(SOURCES)


def test_unmapped_and_missing_keys_are_named():
    w = torch.zeros(2, 2)
    with pytest.raises(KeyError, match=r"no 'hf\.llava' rule maps: \['linear_3\.weight'\]"):
        convert_state_dict('hf.llava', {'linear_1.weight': w, 'linear_2.weight': w, 'linear_3.weight': w})
    with pytest.raises(KeyError, match=r'missing keys.*linear_2'):
        convert_state_dict('hf.llava', {'linear_1.weight': w})


def test_a_fused_projection_with_a_missing_part_is_named():
    state = _blip2().state_dict()
    del state['qformer.encoder.layer.1.attention.attention.value.weight']
    with pytest.raises(KeyError, match=r'layers\.1\.self_attn\.to_kv\.weight'):
        convert_state_dict('hf.blip2', state)


def test_blip2_keeps_only_the_connector_and_fuses_key_and_value():
    state = _blip2().state_dict()
    converted = convert_state_dict('hf.blip2', state)
    assert not any(k.startswith(('vision_model', 'language_model')) for k in converted)
    fused = converted['layers.0.cross_attn.to_kv.weight']
    prefix = 'qformer.encoder.layer.0.crossattention.attention.'
    assert torch.equal(fused, torch.cat([state[prefix + 'key.weight'], state[prefix + 'value.weight']]))


# -- Flamingo's gated cross-attention block ------------------------------------------------------------


def test_gated_block_matches_open_flamingo():
    ref = open_flamingo_gated_block(24, 20, dim_head=8, heads=3, ff_mult=2)
    with torch.no_grad():  # move every weight off its initial value, gates included, so that each one matters
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    ref.eval()
    ours = GatedCrossAttentionBlock(24, kv_dim=20, num_heads=3, head_dim=8, ff_mult=2)
    ours.load_state_dict(convert_state_dict('open_flamingo.gated_xattn', ref.state_dict()), strict=True)
    ours.eval()
    # sample 0: text, image 1, text, image 2, text (its third slot is padding); sample 1: three images
    locations = torch.zeros(2, 9, dtype=torch.bool)
    locations[0, [2, 5]] = True
    locations[1, [0, 3, 4]] = True
    x, media = torch.randn(2, 9, 24), torch.randn(2, 3, 5, 20)
    context = MediaContext(media, locations.long().cumsum(1))
    with torch.no_grad():
        torch.testing.assert_close(ours(x, media, context.media_index), ref(x, media, locations), **TOL)
        new = torch.randn(2, 1, 24)  # a decoding step: after the last image
        expected = ref(new, media, locations, use_cached_media=True)
        torch.testing.assert_close(ours(new, media, context.index_for(new)), expected, **TOL)
