import pytest
import torch

from vlkit.models.fusion import IGNORE_INDEX, AutoregressiveFusion

IMG = 99  # the <image> token id in these tests
M, D = 3, 4


def _batch():
    # sample 0: two images; sample 1: none; sample 2: one image and right padding (id 0, mask 0)
    input_ids = torch.tensor([[5, IMG, 6, IMG, 7], [5, 6, 7, 8, 9], [IMG, 5, 6, 0, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    labels = torch.tensor([[-100, -100, -100, -100, 7], [-100, -100, 7, 8, 9], [-100, -100, 6, -100, -100]])
    text = torch.arange(3 * 5, dtype=torch.float)[:, None].repeat(1, D).view(3, 5, D)  # row value = b * 5 + t
    visual = -torch.arange(1, 4, dtype=torch.float)[:, None, None].repeat(1, M, D)  # image k has value -(k+1)
    return text, input_ids, attention_mask, visual, labels


def test_visual_tokens_land_at_their_markers_for_different_image_counts():
    text, ids, mask, visual, labels = _batch()
    out = AutoregressiveFusion()(text, ids, mask, visual, IMG, labels)
    e, m, lab = out['inputs_embeds'][..., 0], out['attention_mask'], out['labels']
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
    text, ids, mask, visual, _ = _batch()
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # left padding in row 1
    out = AutoregressiveFusion()(text, ids, mask, visual, IMG, align_right=True)
    m = out['attention_mask']
    assert m[:, -1].tolist() == [1, 1, 1]
    assert out['inputs_embeds'][1, -3:, 0].tolist() == [7, 8, 9]
    assert out['inputs_embeds'][2, -7:, 0].tolist() == [-3, -3, -3, 11, 12, 13, 14]
    assert m[2].tolist() == [0, 0] + [1] * 7


def test_gradients_reach_visual_tokens_and_text():
    text, ids, mask, visual, labels = _batch()
    text.requires_grad_()
    visual.requires_grad_()
    AutoregressiveFusion()(text, ids, mask, visual, IMG, labels)['inputs_embeds'].sum().backward()
    assert (visual.grad == 1).all()
    assert (text.grad[ids != IMG] == 1).all() and (text.grad[ids == IMG] == 0).all()


def test_marker_and_image_count_mismatch_is_refused():
    text, ids, mask, visual, _ = _batch()
    with pytest.raises(ValueError, match='3 .* markers but 2 images'):
        AutoregressiveFusion()(text, ids, mask, visual[:2], IMG)
