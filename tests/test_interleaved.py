"""Interleaved image-text documents: shards -> dataset -> vlm_collate -> both fusions, and the synthetic
benchmark's few-shot interleaved variant."""

import io
import itertools
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.helpers import write_shard
from vlkit.constants import IGNORE_INDEX
from vlkit.data import InterleavedShards, SyntheticShards, vlm_collate
from vlkit.registry import MODELS
from vlkit.testing import TINY_IMAGE_SIZE, tiny_model_cfg

ROOT = Path(__file__).resolve().parents[1]
RED, GREEN, BLUE = (220, 20, 20), (20, 220, 20), (20, 20, 220)


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE), colour).save(buf, format='PNG')
    return buf.getvalue()


def _doc(key: str, texts: list, targets: list | None = None, colours=(), task='doc') -> list:
    images = iter(f'{key}.{i}.png' for i in range(len(colours)))
    record = {'texts': texts, 'images': [next(images) if t is None else None for t in texts], 'task': task}
    if targets is not None:
        record['targets'] = targets
    pngs = [(f'{key}.{i}.png', _png(c)) for i, c in enumerate(colours)]
    return [(f'{key}.json', json.dumps(record).encode()), *pngs]


# 0 images (a question and its answer); 1 image with the question before it; 3 images with text between
# and after them and no targets (every text segment trains)
DOCS = {
    0: _doc('zero', ['what word is written ?', ' cat'], [False, True]),
    1: _doc(
        'one', ['how many shapes are there ?', None, 'answer :', ' two'], [False, False, False, True], [RED]
    ),
    3: _doc(
        'three', [None, 'red', None, 'what colour is the circle ?', None, 'blue'], None, [RED, GREEN, BLUE]
    ),
}
EXPECTED_TOKENS = {
    0: ['<s>', 'what', 'word', 'is', 'written', '?', 'cat', '</s>'],
    1: ['<s>', 'how', 'many', 'shapes', 'are', 'there', '?', '<image>', 'answer', ':', 'two', '</s>'],
    3: [
        '<s>',
        '<image>',
        'red',
        '<image>',
        'what',
        'colour',
        'is',
        'the',
        'circle',
        '?',
        '<image>',
        'blue',
        '</s>',
    ],
}
# which of EXPECTED_TOKENS carry loss: the targets and their end-of-sequence token; every text without targets
LOSS = {0: {6, 7}, 1: {10, 11}, 3: {2, 4, 5, 6, 7, 8, 9, 11, 12}}


@pytest.fixture
def shard(tmp_path):
    return write_shard(tmp_path / 'docs-00000.tar', [m for n in (0, 1, 3) for m in DOCS[n]])


def _dataset(shards, synthetic_root, mode='train', **kwargs):
    tokenizer = dict(type='synthetic_tokenizer', data_root=synthetic_root)
    return InterleavedShards(
        shards, tokenizer, image_size=TINY_IMAGE_SIZE, mode=mode, shuffle_buffer=1, **kwargs
    )


@pytest.fixture
def batch(shard, synthetic_root):
    ds = _dataset([shard], synthetic_root)
    samples = list(itertools.islice(iter(ds), 3))  # one shard, no shuffling: the documents in order
    return vlm_collate(samples), ds.tokenizer


def _colour(image: torch.Tensor) -> int:
    return int(image.mean((1, 2)).argmax())  # 0 red, 1 green, 2 blue


def test_documents_collate_with_0_1_and_3_images_in_order(batch):
    batch, _ = batch
    assert batch['image_counts'].tolist() == [0, 1, 3]
    assert batch['images'].shape == (4, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
    assert [_colour(i) for i in batch['images']] == [0, 0, 1, 2]  # doc 1: red; doc 3: red, green, blue
    assert 'crop_counts' not in batch  # one crop per image


def test_markers_and_labels_sit_where_the_document_puts_them(batch):
    batch, tokenizer = batch
    for row, n in enumerate((0, 1, 3)):
        width = int(batch['attention_mask'][row].sum())
        ids, labels = batch['input_ids'][row, :width], batch['labels'][row]
        assert tokenizer.convert_ids_to_tokens(ids.tolist()) == EXPECTED_TOKENS[n]
        expected = [int(t) if i in LOSS[n] else IGNORE_INDEX for i, t in enumerate(ids)]
        assert labels[:width].tolist() == expected
        assert (labels[width:] == IGNORE_INDEX).all()  # padding


def test_generation_prompt_stops_before_the_last_target_with_its_images(shard, tmp_path, synthetic_root):
    samples = list(_dataset([shard], synthetic_root, mode='generate'))
    assert [s['answer'] for s in samples] == ['cat', 'two', 'blue']
    assert [len(s['images']) for s in samples] == [0, 1, 3]
    # an image after the answer is not part of the prompt
    later = _doc(
        'later', [None, 'answer :', ' red', None, 'blue'], [False, False, True, False, False], [RED, BLUE]
    )
    (sample,) = _dataset([write_shard(tmp_path / 'later-00000.tar', later)], synthetic_root, mode='generate')
    assert sample['answer'] == 'red' and len(sample['images']) == 1 and _colour(sample['images'][0]) == 0
    batch = vlm_collate([*samples, sample])
    assert (
        batch['image_counts'].tolist() == [0, 1, 3, 1] and batch['attention_mask'][:, -1].all()
    )  # left padding


@pytest.mark.parametrize(
    'fusion', [dict(type='AutoregressiveFusion'), dict(type='CrossAttentionFusion', num_heads=2, head_dim=8)]
)
def test_model_trains_on_a_batch_of_documents(batch, synthetic_root, fusion):
    batch, _ = batch
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_cfg(synthetic_root, fusion=fusion)).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=3e-3)
    losses = []
    for _ in range(4):
        loss = model(**batch, mode='loss')['loss']
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert all(p.grad is not None for p in model.connector.parameters())


def test_bad_documents_are_skipped_and_counted(tmp_path, synthetic_root):
    misaligned = [('bad.json', json.dumps({'texts': ['red', None], 'images': [None]}).encode())]
    both = [('both.json', json.dumps({'texts': ['red'], 'images': ['x.png']}).encode())]
    no_image = _doc('gone', [None, 'red'], None, [RED])[:1]  # the JSON without its PNG
    conversation = [('conv.png', _png(RED)), ('conv.txt', b'red')]
    shard = write_shard(tmp_path / 'bad-00000.tar', misaligned + both + no_image + conversation + DOCS[1])
    ds = _dataset([shard], synthetic_root, mode='generate')
    assert [s['answer'] for s in ds] == ['two']
    assert ds.skipped.counts == {'other': 2, 'missing_field': 2}


def test_anyres_crops_documents_too(shard, synthetic_root):
    ds = _dataset([shard], synthetic_root, mode='generate', anyres=dict(grids=[(1, 1)], global_view=True))
    batch = vlm_collate(list(ds))
    assert batch['crop_counts'].tolist() == [2, 2, 2, 2]  # four images, each a global view and one crop
    assert batch['images'].shape[0] == 8 and batch['image_counts'].tolist() == [0, 1, 3]


def test_synthetic_interleaved_variant_is_generated_lazily_beside_the_default(synthetic_root):
    root = Path(synthetic_root)
    manifest = (root / 'manifest.json').read_text()
    kwargs = dict(
        data_root=synthetic_root,
        image_size=TINY_IMAGE_SIZE,
        tokenizer=dict(type='synthetic_tokenizer', data_root=synthetic_root),
        variant='interleaved',
    )
    train = SyntheticShards('train', mode='generate', **kwargs)
    val = SyntheticShards('val', mode='generate', **kwargs)
    assert (root / 'manifest.json').read_text() == manifest  # the default benchmark is untouched
    assert (root / 'variants' / 'interleaved' / 'manifest.json').exists()
    assert val.question_only_prior is not None
    samples = list(train)
    counts = [len(s['images']) for s in samples]
    assert set(counts) == {1, 2, 3}  # 0-2 solved examples, then the query with its image
    tok = train.tokenizer
    unk = tok.unk_token_id
    assert all(unk not in s['input_ids'] for s in samples)  # the documents' words are in the vocabulary
    image_id = tok.convert_tokens_to_ids('<image>')
    assert all(s['input_ids'].count(image_id) == len(s['images']) for s in samples)
    assert all(s['input_ids'][-1] == tok.convert_tokens_to_ids(':') for s in samples)  # '... answer :'
    starts_with_text = [s['input_ids'][1] != image_id for s in samples if len(s['images'])]
    assert any(starts_with_text) and not all(starts_with_text)  # text before the first image, or not
    batch = vlm_collate(samples[:8])
    assert batch['images'].shape[0] == sum(counts[:8])


@pytest.mark.parametrize('variant', ['interleaved', 'hires'])
def test_variant_data_configs_build_their_datasets(synthetic_root, variant):
    from mmengine.config import Config

    from vlkit.registry import DATASETS

    cfg = Config.fromfile(str(ROOT / 'configs' / '_base_' / 'data' / f'synthetic_{variant}.py'))
    shared = dict(
        data_root=synthetic_root,
        image_size=TINY_IMAGE_SIZE,
        tokenizer=dict(type='synthetic_tokenizer', data_root=synthetic_root),
    )
    ds = DATASETS.build(dict(cfg.val_dataloader.dataset.to_dict(), **shared))
    assert ds.__class__.__name__ == 'SyntheticShards' and len(ds) == len(list(ds))
    batch = vlm_collate(list(ds)[:4])
    assert batch['input_ids'].shape[0] == 4 and int(batch['image_counts'].sum()) >= 4
    if variant == 'hires':  # 2x2 grid plus the global view for every image
        assert batch['crop_counts'].tolist() == [5, 5, 5, 5]
