"""The fusion contract (docs/architecture.md, "Fusion") for every registered fusion, and the fully
autoregressive fusion's placement of visual tokens on hand-worked batches.

A fusion that is registered but has no entry in vlkit.testing.TINY_FUSIONS fails
``test_every_fusion_is_covered``.
"""

import pytest
import torch

from vlkit.constants import IGNORE_INDEX
from vlkit.models.fusion import AutoregressiveFusion, FusionInputs
from vlkit.registry import FUSIONS, MODELS
from vlkit.testing import TEXTS, TINY_FUSIONS, text_batch, tiny_model_cfg

IMG = 99  # the <image> token id in these tests
M, D = 3, 4


def _names():
    FUSIONS.import_from_location()
    return sorted(FUSIONS.module_dict)


def test_every_fusion_is_covered():
    missing = set(_names()) - set(TINY_FUSIONS)
    assert not missing, (
        f'registered fusions without contract-test settings (add them to TINY_FUSIONS): {missing}'
    )


def _model(root: str, name: str):
    torch.manual_seed(0)
    return MODELS.build(tiny_model_cfg(root, fusion=dict(type=name, **TINY_FUSIONS[name])))


@pytest.mark.parametrize('name', _names())
def test_fusion_contract(synthetic_root, name):
    model = _model(synthetic_root, name).train()
    batch = text_batch(model, TEXTS)
    inputs = model.fuse(batch['images'], batch['input_ids'], batch['attention_mask'], batch['labels'])
    visual = model.connector.num_output_tokens(model.vision_encoder.num_tokens(model.image_size))
    # the declared fact matches what the fusion does: spliced visual tokens lengthen each row
    extra = batch['image_counts'] * (visual - 1) if FUSIONS.get(name).splices_visual_tokens else 0
    lengths = batch['attention_mask'].sum(1) + extra
    assert inputs.inputs_embeds.shape[:2] == inputs.attention_mask.shape == inputs.labels.shape
    assert inputs.attention_mask.sum(1).tolist() == lengths.tolist()
    assert inputs.inputs_embeds.shape[1] == max(batch['input_ids'].shape[1], int(lengths.max()))
    assert (inputs.labels != IGNORE_INDEX).sum() == (batch['labels'] != IGNORE_INDEX).sum()
    loss = model(**batch, mode='loss')['loss']
    assert loss.isfinite()
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert not [n for n, p in trainable if p.grad is None], 'trainable parameters without gradient'
    assert all(p.grad.isfinite().all() for _, p in trainable)


@pytest.mark.parametrize('name', _names())
def test_fusion_answers_left_padded_prompts(synthetic_root, name):
    model = _model(synthetic_root, name).eval()
    prompts = text_batch(model, [t.rsplit(' ', 1)[0] for t in TEXTS], generating=True)
    ids = model.generate_ids(
        prompts['images'], prompts['input_ids'], prompts['attention_mask'], max_new_tokens=2
    )
    assert ids.shape[0] == 3 and 0 < ids.shape[1] <= 2


def _inputs(**kwargs) -> FusionInputs:
    # sample 0: two images; sample 1: none; sample 2: one image and right padding (id 0, mask 0)
    input_ids = torch.tensor([[5, IMG, 6, IMG, 7], [5, 6, 7, 8, 9], [IMG, 5, 6, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    labels = torch.tensor([[-100, -100, -100, -100, 7], [-100, -100, 7, 8, 9], [-100, -100, 6, -100, -100]])
    text = torch.arange(3 * 5, dtype=torch.float)[:, None].repeat(1, D).view(3, 5, D)  # row value = b * 5 + t
    visual = -torch.arange(1, 4, dtype=torch.float)[:, None, None].repeat(1, M, D)  # image k has value -(k+1)
    fields = dict(input_ids=input_ids, attention_mask=attention_mask, text_embeds=text, visual_tokens=visual,
                  image_token_id=IMG, labels=labels)  # fmt: skip
    return FusionInputs(**{**fields, **kwargs})


def test_visual_tokens_land_at_their_markers_for_different_image_counts():
    out = AutoregressiveFusion()(_inputs())
    e, m, lab = out.inputs_embeds[..., 0], out.attention_mask, out.labels
    assert e.shape[1] == 5 + 2 * (M - 1)  # the longest row: two images of M tokens each
    # sample 0: text 0, image 1 (x3), text 2, image 2 (x3), text 4
    assert e[0].tolist() == [0, -1, -1, -1, 2, -2, -2, -2, 4]
    assert m[0].tolist() == [1] * 9 and lab[0].tolist() == [IGNORE_INDEX] * 8 + [7]
    # sample 1: untouched text, then padding
    assert e[1, :5].tolist() == [5, 6, 7, 8, 9] and m[1].tolist() == [1] * 5 + [0] * 4
    assert lab[1].tolist() == [-100, -100, 7, 8, 9] + [IGNORE_INDEX] * 4
    # sample 2: image 3 first, then its text, padding last
    assert e[2, :5].tolist() == [-3, -3, -3, 11, 12] and m[2].tolist() == [1] * 5 + [0] * 4
    assert lab[2].tolist()[:5] == [IGNORE_INDEX] * 4 + [6]


def test_right_alignment_ends_every_row_at_the_last_column():
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padding in row 1
    out = AutoregressiveFusion()(_inputs(attention_mask=mask, labels=None, align_right=True))
    m = out.attention_mask
    assert m[:, -1].tolist() == [1, 1, 1]
    assert out.inputs_embeds[1, -3:, 0].tolist() == [7, 8, 9]
    assert out.inputs_embeds[2, -7:, 0].tolist() == [-3, -3, -3, 11, 12, 13, 14]
    assert m[2].tolist() == [0, 0] + [1] * 7
    assert out.position_ids()[1, -3:].tolist() == [0, 1, 2]  # positions count real tokens only


def test_gradients_reach_visual_tokens_and_text():
    inputs = _inputs()
    text, visual = inputs.text_embeds.requires_grad_(), inputs.visual_tokens.requires_grad_()
    AutoregressiveFusion()(inputs).inputs_embeds.sum().backward()
    assert (visual.grad == 1).all()
    ids = inputs.input_ids
    assert (text.grad[ids != IMG] == 1).all() and (text.grad[ids == IMG] == 0).all()


def test_marker_and_image_count_mismatch_is_refused():
    inputs = _inputs()
    with pytest.raises(ValueError, match='3 .* markers but 2 images'):
        AutoregressiveFusion()(_inputs(visual_tokens=inputs.visual_tokens[:2]))
