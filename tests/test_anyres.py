"""Patch-wise any-resolution encoding: grid selection, crops, the dataset transform, the model's token
counts with every connector, and the anyres config through tools/train.py."""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import run_tool, write_shard
from vlkit.data import ConversationShards, vlm_collate
from vlkit.data.anyres import check_anyres, num_crops, resize_and_pad, select_grid, split_image
from vlkit.models.fusion import AutoregressiveFusion, FusionInputs
from vlkit.registry import CONNECTORS, MODELS
from vlkit.testing import TINY_CONNECTORS as TINY
from vlkit.testing import TINY_IMAGE_SIZE, tiny_model_cfg, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
GRIDS = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1)]
ANYRES = dict(grids=[(1, 1), (1, 2), (2, 1), (2, 2)], global_view=True)


@pytest.mark.parametrize(
    'size_hw, expected',
    [
        ((64, 64), (1, 1)),  # fits the base resolution: more crops would only add waste
        ((128, 128), (2, 2)),
        ((64, 192), (1, 3)),  # wide
        ((300, 100), (3, 1)),  # tall
        ((100, 300), (1, 3)),  # 1x3 keeps 12288 pixels, 2x2 only 5461
        ((130, 260), (1, 2)),  # 1x2, 1x3 and 2x2 keep the same 8192 pixels; 1x2 wastes none
        ((200, 200), (2, 2)),
    ],
)
def test_select_grid_maximises_resolution_then_minimises_waste(size_hw, expected):
    assert select_grid(size_hw, GRIDS, base=64) == expected


def test_bad_grids_are_refused_with_the_value():
    with pytest.raises(ValueError, match=r'\(rows, cols\).*\[0, 2\]'):
        select_grid((64, 64), [[0, 2]], base=64)
    with pytest.raises(ValueError, match='empty'):
        select_grid((64, 64), [], base=64)
    with pytest.raises(ValueError, match="got keys \\['grid'\\]"):
        check_anyres(dict(grid=[(1, 2)]))


def test_split_image_gives_global_view_then_row_major_crops():
    # a 2:1 image: red left half, blue right half -> grid 1x2 at base 16, each crop one colour
    image = Image.new('RGB', (32, 16), (255, 0, 0))
    image.paste((0, 0, 255), (16, 0, 32, 16))
    grid = select_grid((16, 32), GRIDS, base=16)
    crops = split_image(image, grid, base=16)
    assert grid == (1, 2) and len(crops) == num_crops(grid) == 3
    assert all(c.size == (16, 16) for c in crops)
    left, right = np.asarray(crops[1]), np.asarray(crops[2])
    assert (left[..., 0] > 200).all() and (right[..., 2] > 200).all()
    assert np.asarray(crops[0])[8, 2, 0] > 200 and np.asarray(crops[0])[8, 13, 2] > 200  # the whole image
    assert len(split_image(image, grid, base=16, global_view=False)) == 2


@pytest.mark.parametrize('size_wh', [(1000, 667), (667, 1000), (1, 300), (300, 1), (640, 480), (97, 61)])
@pytest.mark.parametrize('grid', [(1, 2), (2, 2), (3, 1)])
def test_resize_and_pad_gives_llava_nexts_pixels(size_wh, grid):
    """vlkit's canvas equals LLaVA-NeXT's resize_and_pad_image (the installed llava package's) pixel for
    pixel: the same rounding of the sizes, the same place and the same black padding."""
    mm_utils = pytest.importorskip('llava.mm_utils', reason='LLaVA is not installed (make setup installs it)')
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size_wh[1], size_wh[0], 3), dtype=np.uint8))
    rows, cols = grid
    ours = resize_and_pad(image, (rows * 16, cols * 16))
    theirs = mm_utils.resize_and_pad_image(image, (cols * 16, rows * 16))
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def _png(size_wh, colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', size_wh, colour).save(buf, format='PNG')
    return buf.getvalue()


def _qa(question='what colour is the circle ?', answer='red') -> bytes:
    turns = [{'from': 'human', 'value': f'<image>\n{question}'}, {'from': 'gpt', 'value': answer}]
    return json.dumps({'conversations': turns, 'task': 'colour'}).encode()


S = TINY_IMAGE_SIZE


@pytest.fixture
def anyres_batch(tmp_path, synthetic_root):
    """Three conversations with images of 1x1, 1x2 and 2x2 base sizes, read with anyres and collated for
    generation; and the same batch with labels on its text (not on the image markers nor the padding)."""
    sizes = [(S, S), (2 * S, S), (2 * S, 2 * S)]  # (width, height)
    members = []
    for i, size in enumerate(sizes):
        members += [(f's{i}.png', _png(size)), (f's{i}.json', _qa())]
    shard = write_shard(tmp_path / 'anyres-00000.tar', members)
    tokenizer = dict(type='synthetic_tokenizer', data_root=synthetic_root)
    ds = ConversationShards([shard], tokenizer, image_size=S, mode='generate', anyres=ANYRES)
    batch = vlm_collate(list(ds))
    ids = batch['input_ids']
    labels = ids.masked_fill(batch['attention_mask'] == 0, -100).masked_fill(
        ids == ds.tokenizer.convert_tokens_to_ids('<image>'), -100
    )
    train = {k: v for k, v in batch.items() if k != 'answers'} | {'labels': labels}
    return batch, train


def test_dataset_crops_images_and_collate_counts_them(anyres_batch):
    batch, _ = anyres_batch
    # global view + 1x1, 1x2 and 2x2 grids
    assert batch['crop_counts'].tolist() == [2, 3, 5]
    assert batch['image_counts'].tolist() == [1, 1, 1]
    assert batch['images'].shape == (10, 3, S, S)


def _model(synthetic_root, connector, separator=True):
    torch.manual_seed(0)
    cfg = tiny_model_cfg(synthetic_root, connector=connector)
    return MODELS.build(dict(cfg, crop_separator=separator))


@pytest.mark.parametrize('name', sorted(TINY))
def test_tokens_per_image_are_the_sum_over_crops_for_every_connector(synthetic_root, anyres_batch, name):
    CONNECTORS.import_from_location()
    batch, train = anyres_batch
    model = _model(synthetic_root, dict(type=name, **TINY[name]))
    m = model.connector.num_output_tokens(model.vision_encoder.num_tokens(S))
    with torch.no_grad():
        tokens, lengths = model.encode_images(batch['images'], batch['crop_counts'])
    crops = batch['crop_counts']
    assert lengths.tolist() == (crops * m + crops - 1).tolist()  # crops, global view and separators
    assert tokens.shape[:2] == (3, int(lengths.max()))
    # each image's crop tokens are its crops' connector outputs, with the separator between them
    with torch.no_grad():
        feats = model.vision_encoder(batch['images'])
        per_crop = model.connector(feats.tokens, None, feats.grid)
    torch.testing.assert_close(tokens[2, :m], per_crop[5])
    torch.testing.assert_close(tokens[2, m], model.crop_separator.detach())
    torch.testing.assert_close(tokens[2, m + 1 : 2 * m + 1], per_crop[6])
    assert (tokens[0, int(lengths[0]) :] == 0).all()
    # the fused sequence grows by each image's token count, and the loss trains the separator
    inputs = model.fuse(batch['images'], batch['input_ids'], batch['attention_mask'], crop_counts=crops)
    text_len = batch['attention_mask'].sum(1)
    assert (inputs.attention_mask.sum(1) == text_len - 1 + lengths).all()
    loss = model(**train, mode='loss')['loss']
    loss.backward()
    assert loss.isfinite() and model.crop_separator.grad.abs().sum() > 0


def test_cross_attention_fusion_trains_on_crops(synthetic_root, anyres_batch):
    _, train = anyres_batch
    torch.manual_seed(0)
    cfg = tiny_model_cfg(synthetic_root, fusion=dict(type='CrossAttentionFusion', num_heads=2, head_dim=8))
    model = MODELS.build(dict(cfg, crop_separator=True))
    with torch.no_grad():  # open the tanh gates (0 at initialisation), so the visual tokens count
        for block in model.fusion.blocks:
            block.attn_gate.fill_(1.0)
    loss = model(**train, mode='loss')['loss']
    loss.backward()
    assert loss.isfinite() and model.crop_separator.grad.abs().sum() > 0


def test_without_separator_tokens_are_crops_times_m(synthetic_root, anyres_batch):
    batch, _ = anyres_batch
    model = _model(synthetic_root, dict(type='MLPProjector'), separator=False)
    with torch.no_grad():
        _, lengths = model.encode_images(batch['images'], batch['crop_counts'])
    assert lengths.tolist() == [2 * 16, 3 * 16, 5 * 16]  # 32 px crops, 8 px patches: 16 tokens each
    answers = model(**batch, mode='predict')
    assert len(answers) == 3


def test_autoregressive_fusion_places_ragged_visual_tokens():
    img = 9
    ids = torch.tensor([[1, img, 2, img], [img, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    text = torch.arange(8.0).view(2, 4, 1)
    visual = torch.tensor([[-1.0, -1, -1], [-2, 0, 0], [-3, -3, 0]])[..., None]  # lengths 3, 1, 2
    inputs = FusionInputs(ids, mask, text, visual, img, visual_lengths=torch.tensor([3, 1, 2]))
    out = AutoregressiveFusion()(inputs)
    e, m = out.inputs_embeds[..., 0], out.attention_mask
    assert e[0].tolist() == [0, -1, -1, -1, 2, -2]
    assert e[1, :3].tolist() == [-3, -3, 5] and m[1].tolist() == [1, 1, 1, 0, 0, 0]


def test_hires_variant_word_is_unreadable_at_base_resolution_but_not_in_crops():
    from vlkit.data import synthetic

    base = synthetic.BASE_SIZE
    spec = synthetic.VARIANTS['hires']
    rng = __import__('random').Random(0)
    ink_base, ink_crops, ink_default = [], [], []
    for _ in range(8):
        scene, _, _ = synthetic.make_question(rng, 'text')
        image, maps = synthetic.render(scene, base * spec.image_scale, spec.word_scale)
        band = maps['word'] > 0

        def ink(img, band_mask):
            return int(((np.asarray(img.convert('L')) < 128) & band_mask).sum())

        small = image.resize((base, base), Image.BICUBIC)
        band_small = np.asarray(Image.fromarray(band).resize((base, base))) > 0
        ink_base.append(ink(small, band_small))
        ink_crops.append(ink(image, band))  # the crops are the image at full resolution
        default, default_maps = synthetic.render(scene, base)
        ink_default.append(ink(default, default_maps['word'] > 0))
    # downscaled, the word keeps a few dark pixels; in the crops it has about as many as at default size
    assert max(ink_base) <= 6 and min(ink_crops) >= 20
    assert np.mean(ink_crops) > 0.4 * np.mean(ink_default)


@pytest.mark.slow
def test_anyres_config_trains(synthetic_root, tmp_path):
    work_dir = str(tmp_path / 'run')
    run_tool('train.py', 'configs/blip3_perceiver_anyres.py', *tiny_overrides(synthetic_root, work_dir, 2))
    assert os.path.isfile(os.path.join(work_dir, 'iter_2.pth'))
    manifest = json.loads((Path(synthetic_root) / 'variants' / 'hires' / 'manifest.json').read_text())
    assert manifest['image_size'] == 2 * TINY_IMAGE_SIZE
