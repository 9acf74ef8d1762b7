"""Real data through the tools, end to end: a LLaVA-format source converted by tools/prepare_data.py trains
through tools/train.py with a tokenizer that knows its words (the loss falls), and tools/test.py
--benchmark vqav2 on a test-made VQAv2 pair gives the hand-worked accuracy and writes the submission file."""

from __future__ import annotations

import glob
import json
import os
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.helpers import run_tool, write_vqa_pair
from vlkit.testing import chatml_tokenizer, tiny_overrides

CONFIG = 'configs/llava15_instruct.py'
COLOURS = {'red': (200, 0, 0), 'green': (0, 170, 0), 'blue': (0, 0, 200), 'yellow': (220, 200, 0)}
WORDS = (
    'what colour is the shape which it a square bar two dogs ? . Answer question using single word or phrase'
)


def _tokenizer(folder: Path) -> str:
    corpus = [f'{WORDS} {" ".join(COLOURS)}'] * 10
    tok = chatml_tokenizer(corpus)
    tok.save_pretrained(str(folder))
    return str(folder)


def _llava_source(root: Path, answer=None, n: int = 64) -> Path:
    """``n`` pictures of a coloured square or bar, each with a two-turn conversation about it."""
    rng = random.Random(0)
    records = []
    (root / 'images').mkdir(parents=True)
    for i in range(n):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(['square', 'bar'])
        image = Image.new('RGB', (32, 32), (255, 255, 255))
        ImageDraw.Draw(image).rectangle(
            (4, 4, 28, 28) if shape == 'square' else (4, 12, 28, 20), fill=COLOURS[colour]
        )
        image.save(root / 'images' / f'{i}.jpg')
        records.append(
            {
                'id': i if i % 2 else str(i),
                'image': f'{i}.jpg',
                'conversations': [
                    {'from': 'human', 'value': '<image>\nwhat colour is the shape ?'},
                    {'from': 'gpt', 'value': answer or f'the shape is {colour} .'},
                    {'from': 'human', 'value': 'which shape is it ?'},
                    {'from': 'gpt', 'value': answer or f'a {colour} {shape} .'},
                ],
            }
        )
    (root / 'llava.json').write_text(json.dumps(records))
    run_tool(
        'prepare_data.py',
        'llava',
        str(root / 'llava.json'),
        '--images',
        str(root / 'images'),
        '--out',
        str(root / 'llava_instruct'),
        '--shard-size',
        '16',
    )
    return root / 'llava_instruct'


def _train(data: Path, tokenizer: str, work_dir: str, synthetic_root: str, iters: int, *extra: str) -> None:
    run_tool(
        'train.py',
        CONFIG,
        *tiny_overrides(synthetic_root, work_dir, iters),
        f'train_dataloader.dataset.data_dir={data}',
        'train_dataloader.dataset.template=chat',
        f'language_model.tokenizer={tokenizer}',
        'val_cfg=None',
        'val_dataloader=None',
        'val_evaluator=None',
        'test_cfg=None',
        'test_dataloader=None',
        'test_evaluator=None',
        'param_scheduler.0.end=5',
        'optim_wrapper.optimizer.lr=3e-3',
        *extra,
    )


@pytest.mark.slow
def test_a_llava_source_trains_with_a_tokenizer_that_knows_its_words(tmp_path, synthetic_root):
    data = _llava_source(tmp_path)
    tokenizer = _tokenizer(tmp_path / 'tokenizer')
    from vlkit.tokenization import build_tokenizer

    tok = build_tokenizer(tokenizer)
    assert (
        tok.unk_token_id is None
        or tok.unk_token_id not in tok('the shape is yellow . a red bar .')['input_ids']
    )
    work_dir = str(tmp_path / 'run')
    _train(data, tokenizer, work_dir, synthetic_root, 30)
    (scalars,) = glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json'))
    losses = [json.loads(line)['loss'] for line in open(scalars) if '"loss"' in line]
    assert len(losses) == 6 and losses[-1] < 0.7 * losses[0], losses


@pytest.mark.slow
def test_vqav2_benchmark_gives_the_hand_worked_accuracy_and_the_submission_file(tmp_path, synthetic_root):
    """A model trained to answer "blue" to everything, on tests.helpers' VQAv2 pair:
    q101 (10 x red) scores 0; q201 (8 x blue, 2 x green) scores 1 (every 9-annotator subset has >= 3 blue);
    q202 (a number) scores 0: overall 100 / 3, other (q101, q201) 50, number 0."""
    tokenizer = _tokenizer(tmp_path / 'tokenizer')
    work_dir = str(tmp_path / 'run')
    _train(_llava_source(tmp_path, answer='blue'), tokenizer, work_dir, synthetic_root, 40)
    questions, annotations, images = write_vqa_pair(
        tmp_path, ('what colour is the shape ?', 'what colour is the shape ?', 'how many dogs ?')
    )
    data = tmp_path / 'vqav2'
    run_tool(
        'prepare_data.py',
        'vqa',
        str(questions),
        str(annotations),
        '--images',
        str(images),
        '--out',
        str(data),
    )
    opts = tiny_overrides(synthetic_root, work_dir, 40)
    out = run_tool(
        'test.py',
        CONFIG,
        'last',
        '--benchmark',
        'vqav2',
        '--data',
        str(data),
        '--template',
        'chat',
        *opts[:2],
        *opts[2:],
        f'language_model.tokenizer={tokenizer}',
    ).stdout
    submission = json.load(open(os.path.join(work_dir, 'submission_vqav2_val_iter_40.json')))
    assert submission == [{'question_id': q, 'answer': 'blue'} for q in (101, 201, 202)]
    result = json.load(open(os.path.join(work_dir, 'vqav2_val_0shot_iter_40.json')))
    assert result['images']['vqa/overall'] == pytest.approx(100 / 3)
    assert result['images']['vqa/other'] == pytest.approx(50.0) and result['images']['vqa/number'] == 0.0
    assert result['benchmark'] == 'vqav2' and result['prompt'].endswith(
        'Answer the question using a single word or phrase.'
    )
    assert 'submission file' in out

    # test-dev: questions without answers, on test2015's images; the file answers all of test2015's questions
    test_dev = json.loads(questions.read_text())
    test_dev['data_subtype'] = 'test-dev2015'
    os.makedirs(images / 'test2015')
    for image_id in (1, 2):
        name = f'COCO_{{}}_{image_id:012d}.jpg'
        os.link(images / 'val2014' / name.format('val2014'), images / 'test2015' / name.format('test2015'))
    (tmp_path / 'test-dev.json').write_text(json.dumps(test_dev))
    test2015 = dict(
        test_dev, questions=[*test_dev['questions'], {'image_id': 3, 'question': '?', 'question_id': 303}]
    )
    (tmp_path / 'test2015.json').write_text(json.dumps(test2015))
    run_tool(
        'prepare_data.py', 'vqa', str(tmp_path / 'test-dev.json'), '--images', str(images), '--out', str(data)
    )
    run_tool(
        'test.py', CONFIG, 'last', '--benchmark', 'vqav2', '--data', str(data), '--split', 'test-dev',
        '--submission-questions', str(tmp_path / 'test2015.json'), '--template', 'chat', *opts,
        f'language_model.tokenizer={tokenizer}',
    )  # fmt: skip
    submission = json.load(open(os.path.join(work_dir, 'submission_vqav2_test-dev_iter_40.json')))
    assert submission == [{'question_id': q, 'answer': 'blue'} for q in (101, 201, 202)] + [
        {'question_id': 303, 'answer': ''}
    ]
    result = json.load(open(os.path.join(work_dir, 'vqav2_test-dev_0shot_iter_40.json')))
    assert not any(key.startswith('vqa/') for key in result['images']), result['images']  # nothing to score
