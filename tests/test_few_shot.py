"""k-shot evaluation: FewShotDataset, a model on k-shot batches with both fusions, tools/test.py --shots."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import torch

from tests.helpers import run_tool
from vlkit.data import SyntheticShards, vlm_collate
from vlkit.evaluation import FewShotDataset
from vlkit.registry import FUSIONS, MODELS
from vlkit.testing import TINY_FUSIONS, TINY_IMAGE_SIZE, tiny_model_cfg, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def _split(root: str, split: str, mode: str) -> dict:
    tokenizer = dict(type='synthetic_tokenizer', data_root=root)
    return dict(
        type='SyntheticShards', split=split, data_root=root, tokenizer=tokenizer, image_size=TINY_IMAGE_SIZE,
        mode=mode, shuffle_buffer=50,
    )  # fmt: skip


def _few_shot(root: str, shots: int, seed: int = 0) -> FewShotDataset:
    return FewShotDataset(
        _split(root, 'val', 'generate'), _split(root, 'train', 'train'), shots=shots, seed=seed, pool_size=40
    )


def _take(dataset, n: int) -> list[dict]:
    return list(itertools.islice(iter(dataset), n))


def test_demonstrations_come_before_the_query_with_their_images_and_answers(synthetic_root):
    dataset = _few_shot(synthetic_root, shots=2)
    tokenizer = dataset.dataset.tokenizer
    image_id = tokenizer.convert_tokens_to_ids('<image>')
    queries = _take(
        SyntheticShards(
            **{k: v for k, v in _split(synthetic_root, 'val', 'generate').items() if k != 'type'}
        ),
        4,
    )
    for query, sample in zip(queries, _take(dataset, 4), strict=True):
        demos = dataset.draw(query)
        ids = sample['input_ids']
        assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
        assert ids == ids[:1] + demos[0]['input_ids'][1:] + demos[1]['input_ids'][1:] + query['input_ids'][1:]
        assert ids.count(image_id) == 3 and sample['crop_counts'] == [1, 1, 1]
        assert sample['images'].shape == (3, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
        assert torch.equal(sample['images'][0], demos[0]['image']) and torch.equal(
            sample['images'][2], query['image']
        )
        text = tokenizer.decode(ids)
        assert (
            text.count('answer :') == 3
        )  # two answered demonstrations, then the query waiting for its answer
        assert (
            sample['answer'] == query['answer'] and sample['task'] == query['task'] and sample['shots'] == 2
        )


def test_the_draw_is_fixed_by_the_seed_and_the_query_alone(synthetic_root):
    first = _take(_few_shot(synthetic_root, shots=3), 6)
    again = _take(_few_shot(synthetic_root, shots=3), 6)
    assert all(a['input_ids'] == b['input_ids'] for a, b in zip(first, again, strict=True))
    other_seed = _take(_few_shot(synthetic_root, shots=3, seed=1), 6)
    assert any(a['input_ids'] != b['input_ids'] for a, b in zip(first, other_seed, strict=True))
    dataset = _few_shot(synthetic_root, shots=3)
    query = _take(dataset.dataset, 6)[5]
    assert dataset.with_demonstrations(query)['input_ids'] == first[5]['input_ids']  # order does not matter


def test_zero_shot_leaves_the_queries_unchanged(synthetic_root):
    dataset = _few_shot(synthetic_root, shots=0)
    for query, sample in zip(_take(dataset.dataset, 3), _take(dataset, 3), strict=True):
        assert sample['input_ids'] == query['input_ids'] and sample['crop_counts'] == [1]


def test_demonstrations_without_answers_are_refused(synthetic_root):
    dataset = FewShotDataset(
        _split(synthetic_root, 'val', 'generate'), _split(synthetic_root, 'train', 'generate'), shots=1
    )
    with pytest.raises(ValueError, match="mode='train'"):
        _take(dataset, 1)


def _fusions() -> list[str]:
    FUSIONS.import_from_location()
    return sorted(FUSIONS.module_dict)


@pytest.mark.parametrize('fusion', _fusions())
def test_a_model_answers_k_shot_batches(synthetic_root, fusion):
    torch.manual_seed(0)
    cfg = tiny_model_cfg(synthetic_root, fusion=dict(type=fusion, **TINY_FUSIONS[fusion]))
    model = MODELS.build(cfg).eval()
    with torch.no_grad():  # gates (cross-attention's, 0 at initialisation) open, as training leaves them
        for name, p in model.fusion.named_parameters():
            if name.endswith('_gate'):
                p.fill_(1.0)
    batch = vlm_collate(_take(_few_shot(synthetic_root, shots=2), 3))
    assert batch['image_counts'].tolist() == [3, 3, 3] and len(batch['images']) == 9
    predictions = model(**batch, mode='predict')
    assert [p['answer'] for p in predictions] == batch['answers']
    # the demonstrations are seen: the query's next-token logits change when the demonstrations' images do
    with torch.no_grad():
        logits = model(batch['images'], batch['input_ids'], batch['attention_mask'])[:, -1]
        shuffled = batch['images'].clone()
        shuffled[0] = torch.rand_like(shuffled[0])
        changed = model(shuffled, batch['input_ids'], batch['attention_mask'])[:, -1]
    assert (logits[0] - changed[0]).abs().max() > 1e-4  # a demonstration's image reaches the answer
    assert torch.allclose(logits[1:], changed[1:], atol=1e-5)  # other samples' images do not leak in


@pytest.mark.slow
def test_test_tool_writes_one_result_per_evaluation(synthetic_root, tmp_path):
    work_dir = str(tmp_path / 'run')
    opts = tiny_overrides(synthetic_root, work_dir, 2)
    run_tool('train.py', 'configs/llava_linear.py', *opts)
    out = run_tool('test.py', 'configs/llava_linear.py', 'last', '--shots', '2', *opts)
    assert 'evaluating' in out.stderr and '100%' in out.stderr  # the progress bar
    result = json.load(open(os.path.join(work_dir, 'accuracy_val_2shot_iter_2.json')))
    assert result['shots'] == 2 and result['split'] == 'val' and 'exact_match/overall' in result['images']
    assert not os.path.exists(os.path.join(work_dir, 'accuracy_val_0shot_iter_2.json'))


def test_demonstrations_come_from_few_shot_demonstrations_where_the_config_names_them():
    import importlib.util

    from mmengine.config import Config

    spec = importlib.util.spec_from_file_location('test_tool', ROOT / 'tools' / 'test.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    loaders = dict(
        test_dataloader=dict(dataset=dict(type='Queries')), train_dataloader=dict(dataset=dict(type='Mix'))
    )
    cfg = Config(loaders)
    tool.use_demonstrations(cfg, 2, 0)
    assert cfg.test_dataloader.dataset.demonstrations.type == 'Mix'  # the train dataset by default
    cfg = Config(dict(loaders, few_shot_demonstrations=dict(type='Pairs')))
    tool.use_demonstrations(cfg, 2, 0)
    assert cfg.test_dataloader.dataset.demonstrations.type == 'Pairs'
    assert cfg.test_dataloader.dataset.dataset.type == 'Queries' and cfg.test_dataloader.dataset.shots == 2
    with pytest.raises(SystemExit, match='no few_shot_demonstrations and no train_dataloader'):
        tool.use_demonstrations(Config(dict(test_dataloader=loaders['test_dataloader'])), 2, 0)
