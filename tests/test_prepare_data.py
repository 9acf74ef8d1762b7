"""tools/prepare_data.py and the formats: for each format a small source in the public layout, converted,
read back (counts, texts, image bytes equal to the source's, the tokens that carry loss), the bad inputs
skipped and counted by reason, --strict, and a killed conversion re-run to the same shards."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import ROOT, run_tool, write_shard, write_vqa_pair
from vlkit.constants import IGNORE_INDEX
from vlkit.data import PreparedShards
from vlkit.data.conversion import ConversionError, Options, convert
from vlkit.data.formats.base import load_json
from vlkit.registry import DATA_FORMATS
from vlkit.testing import chatml_tokenizer

WORDS = (
    'what is in the picture a red bus two dogs play on the beach describe the image cat sleeps sofa how many '
    'colour green blue yes no unanswerable written sign says stop caption a photo of man riding horse '
    'question answer the word on the sign user assistant system'
)


@pytest.fixture(scope='module')
def tokenizer_dir(tmp_path_factory) -> str:
    """A byte-level BPE tokenizer that knows the tests' words, with a ChatML template, saved to a folder (a
    tokenizer spec the datasets and tools/train.py take)."""
    tok = chatml_tokenizer([WORDS] * 20)
    folder = tmp_path_factory.mktemp('tokenizer')
    tok.save_pretrained(str(folder))
    return str(folder)


def _image(path: Path, colour, size=(24, 16), fmt=None) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, colour).save(path, format=fmt)
    return path.read_bytes()


def _convert(name: str, sources, out: Path, images: Path | None = None, shard_size: int = 100, **options):
    fmt = DATA_FORMATS.build(dict(type=name, **options))
    opts = Options(images=str(images) if images else None)
    return convert(
        fmt, [str(s) for s in sources], out, opts, shard_size=shard_size, description={'format': name}
    )


def _members(out: Path) -> list[tuple[str, bytes]]:
    """Every shard's members in order, as (name, bytes)."""
    manifest = json.loads((out / 'manifest.json').read_text())
    found = []
    for split in manifest['splits'].values():
        for shard in split['shards']:
            with tarfile.open(out / shard) as tar:
                found += [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    return found


def _read(out: Path, tokenizer_dir: str, mode: str = 'generate', **kwargs) -> list[dict]:
    ds = PreparedShards(
        str(out), tokenizer=tokenizer_dir, image_size=16, mode=mode, template='chat', **kwargs
    )
    if mode == 'generate':
        return list(ds)
    from itertools import islice

    # training resamples shards with replacement: draw enough to see every sample, and keep each once
    train = PreparedShards(
        str(out),
        tokenizer=tokenizer_dir,
        image_size=16,
        mode='train',
        template='chat',
        shuffle_buffer=1,
        **kwargs,
    )
    once = {s['__key__']: s for s in islice(iter(train), 20 * len(ds))}
    assert len(once) == len(ds), f'{len(ds) - len(once)} samples never drawn'
    return list(once.values())


def _supervised(tokenizer_dir: str, sample: dict) -> str:
    from vlkit.tokenization import build_tokenizer

    tok = build_tokenizer(tokenizer_dir)
    return tok.decode(
        [t for t, lab in zip(sample['input_ids'], sample['labels'], strict=True) if lab != IGNORE_INDEX]
    )


# -- llava --------------------------------------------------------------------------------------------------


def _llava_source(tmp_path: Path) -> tuple[Path, Path, dict]:
    images = tmp_path / 'images'
    source = {
        'a': _image(images / 'coco/a.jpg', (200, 0, 0), fmt='JPEG'),
        'gif': _image(images / 'ocr_vqa/b.jpg', (0, 200, 0), fmt='GIF'),  # a GIF named .jpg
        'png': _image(images / 'ocr_vqa/c.jpg', (0, 0, 200), fmt='PNG'),  # a PNG named .jpg
    }
    (images / 'broken.jpg').write_bytes(b'\xff\xd8\xff not a jpeg')
    turn = lambda h, g: [{'from': 'human', 'value': h}, {'from': 'gpt', 'value': g}]  # noqa: E731
    records = [
        {'id': 7, 'image': 'coco/a.jpg', 'conversations': turn('<image>\ndescribe the image', 'a red bus')},
        {
            'id': '7',
            'image': 'ocr_vqa/b.jpg',
            'conversations': [  # '7' and 7 are two ids (mix665k mixes them)
                {'role': 'user', 'content': '<image>\nwhat colour'},
                {'role': 'assistant', 'content': 'green'},
                {'role': 'user', 'content': 'how many dogs'},
                {'role': 'assistant', 'content': 'two'},
            ],
        },
        {'id': 'text-only', 'conversations': turn('what is written', 'stop')},
        {
            'id': 'two-images',
            'image': ['coco/a.jpg', 'ocr_vqa/c.jpg'],
            'conversations': turn('<image> <image> how many', 'two'),
        },
        {'id': 'missing', 'image': 'coco/nowhere.jpg', 'conversations': turn('<image>', 'a cat')},
        {'id': 'broken', 'image': 'broken.jpg', 'conversations': turn('<image>', 'a cat')},
        {'id': 'count', 'image': 'coco/a.jpg', 'conversations': turn('<image> <image> what', 'a cat')},
        {
            'id': 'one-sided',
            'image': 'coco/a.jpg',
            'conversations': [{'from': 'human', 'value': '<image> hi'}],
        },
        {'id': 'empty', 'image': 'coco/a.jpg', 'conversations': []},
        {'id': 7, 'image': 'coco/a.jpg', 'conversations': turn('<image>', 'again')},  # the image's id again
    ]
    path = tmp_path / 'llava_v1_5_mix.json'
    path.write_text(json.dumps(records))
    return path, images, source


def test_llava_converts_reads_back_and_counts_each_bad_input(tmp_path, tokenizer_dir):
    path, images, source = _llava_source(tmp_path)
    out = tmp_path / 'out'
    manifest = _convert('llava', [path], out, images, shard_size=3)
    assert manifest['num_records'] == 10 and manifest['num_samples'] == 5
    assert manifest['skipped'] == {
        'missing_image': 1,
        'corrupt_image': 1,
        'image_count_mismatch': 1,
        'empty_conversation': 2,
    }  # LLaVA's ids name images: a repeated id is another conversation on the same image, kept
    assert manifest['sources'] == [{'name': path.name, 'path': str(path), 'bytes': path.stat().st_size}]
    assert manifest['splits']['train']['shards'] == [f'train-{i:05d}.tar' for i in range(4)]
    skips = json.loads((out / 'data_skips.json').read_text())
    assert skips['skipped'] == manifest['skipped']
    assert {(r['id'], r['reason']) for r in skips['records']} == {
        ('missing', 'missing_image'),
        ('broken', 'corrupt_image'),
        ('count', 'image_count_mismatch'),
        ('one-sided', 'empty_conversation'),
        ('empty', 'empty_conversation'),
    }
    members = dict(_members(out))
    assert members['000000000.jpg'] == source['a']  # bytes as they are
    assert members['000000001.gif'] == source['gif'] and members['000000003.1.png'] == source['png']
    assert members['000000003.0.jpg'] == source['a'] and '000000002.json' in members  # text-only: no image

    samples = _read(out, tokenizer_dir, mode='train')
    by_id = {
        json.loads(members[f'{s["__key__"]}.json'])['id']: s for s in samples if s['__key__'] != '000000009'
    }
    assert sorted(by_id, key=str) == sorted([7, '7', 'text-only', 'two-images'], key=str)
    assert _supervised(tokenizer_dir, by_id['7']) == 'green<|im_end|>two<|im_end|>'
    assert _supervised(tokenizer_dir, by_id[7]) == 'a red bus<|im_end|>'
    (again,) = [s for s in samples if s['__key__'] == '000000009']
    assert json.loads(members['000000009.json'])['id'] == 7 and members['000000009.jpg'] == source['a']
    assert _supervised(tokenizer_dir, again) == 'again<|im_end|>'
    assert by_id['7']['image'].shape == (3, 16, 16)  # the GIF decodes
    assert (
        by_id['two-images']['images'].shape == (2, 3, 16, 16) and by_id['text-only']['images'].shape[0] == 0
    )
    queries = {(s['meta']['id'], s['answer']) for s in _read(out, tokenizer_dir)}
    assert {(7, 'a red bus'), (7, 'again'), ('7', 'two')} <= queries


def test_strict_stops_at_the_first_bad_record_naming_it(tmp_path):
    path, images, _ = _llava_source(tmp_path)
    fmt = DATA_FORMATS.build(dict(type='llava'))
    with pytest.raises(ConversionError, match=r"record 000000004 \(id 'missing'.*missing_image.*nowhere.jpg"):
        convert(fmt, [str(path)], tmp_path / 'out', Options(images=str(images), strict=True), shard_size=2)
    assert not (tmp_path / 'out' / 'manifest.json').exists()
    assert (tmp_path / 'out' / 'train-00001.tar').exists() and not (
        tmp_path / 'out' / 'train-00002.tar'
    ).exists()


# -- captions -----------------------------------------------------------------------------------------------


def test_coco_captions_and_karpathy(tmp_path, tokenizer_dir):
    images = tmp_path / 'coco'
    a = _image(images / 'val2017/000000000001.jpg', (10, 20, 30), fmt='JPEG')
    _image(images / 'val2017/000000000002.jpg', (30, 20, 10), fmt='JPEG')
    coco = {
        'images': [  # COCO's layout: file names without their folder, the images in val2017/
            {'id': 1, 'file_name': '000000000001.jpg'},
            {'id': 2, 'file_name': '000000000002.jpg'},
            {'id': 3, 'file_name': '000000000003.jpg'},
        ],
        'annotations': [
            {'image_id': 1, 'id': 10, 'caption': 'a red bus'},
            {'image_id': 2, 'id': 11, 'caption': 'a cat'},
            {'image_id': 1, 'id': 12, 'caption': 'a photo of a bus'},
            {'image_id': 3, 'id': 13, 'caption': 'x'},
        ],
    }
    (tmp_path / 'captions_val2017.json').write_text(json.dumps(coco))
    manifest = _convert('coco_captions', [tmp_path / 'captions_val2017.json'], tmp_path / 'out', images)
    assert manifest['splits']['val']['num_samples'] == 2 and manifest['skipped'] == {'missing_image': 1}
    assert dict(_members(tmp_path / 'out'))['000000000.jpg'] == a
    (first, second) = _read(tmp_path / 'out', tokenizer_dir, caption_prompt='caption')
    assert first['answer'] == ['a red bus', 'a photo of a bus'] and first['meta']['image_id'] == 1
    (train,) = [
        s for s in _read(tmp_path / 'out', tokenizer_dir, mode='train') if s['__key__'] == '000000000'
    ]
    assert _supervised(tokenizer_dir, train) in ('a red bus<|im_end|>', 'a photo of a bus<|im_end|>')
    test_image = _image(images / 'test2014/COCO_test2014_000000000009.jpg', (1, 1, 1), fmt='JPEG')
    info = {'images': [{'id': 9, 'file_name': 'COCO_test2014_000000000009.jpg'}]}  # no captions: submit
    (tmp_path / 'image_info_test2014.json').write_text(json.dumps(info))
    manifest = _convert('coco_captions', [tmp_path / 'image_info_test2014.json'], tmp_path / 'test', images)
    assert manifest['splits']['test']['num_samples'] == 1 and manifest['skipped'] == {}
    assert dict(_members(tmp_path / 'test'))['000000000.jpg'] == test_image
    (query,) = _read(tmp_path / 'test', tokenizer_dir, split='test')
    assert query['meta']['image_id'] == 9 and query['answer'] == ''  # no reference: not scored
    renamed = tmp_path / 'coco_val.json'
    renamed.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r'coco_val.json: cannot tell its image folder.*image_folder='):
        _convert('coco_captions', [renamed], tmp_path / 'renamed', images)
    manifest = _convert('coco_captions', [renamed], tmp_path / 'renamed', images / 'val2017', image_folder='')
    assert manifest['splits']['train']['num_samples'] == 2

    karpathy = {
        'images': [
            {
                'filepath': 'val2017',
                'filename': '000000000001.jpg',
                'split': 'test',
                'cocoid': 1,
                'sentences': [{'raw': 'a red bus'}],
            },
            {
                'filepath': 'val2017',
                'filename': '000000000002.jpg',
                'split': 'restval',
                'cocoid': 2,
                'sentences': [{'raw': 'a cat'}],
            },
            {
                'filepath': 'val2017',
                'filename': '000000000002.jpg',
                'split': 'val',
                'cocoid': 5,
                'sentences': [{'raw': 'a cat'}],
            },
        ]
    }
    (tmp_path / 'dataset_coco.json').write_text(json.dumps(karpathy))
    manifest = _convert(
        'karpathy', [tmp_path / 'dataset_coco.json'], tmp_path / 'k', images, splits='test,restval'
    )
    assert {k: v['num_samples'] for k, v in manifest['splits'].items()} == {'test': 1, 'train': 1}
    (test,) = list(
        PreparedShards(
            str(tmp_path / 'k'), split='test', tokenizer=tokenizer_dir, image_size=16, mode='generate'
        )
    )
    assert test['answer'] == ['a red bus'] and test['meta']['image_id'] == 1


# -- question answering -------------------------------------------------------------------------------------


def test_vqa_textvqa_gqa_vizwiz(tmp_path, tokenizer_dir):
    q, a, images = write_vqa_pair(tmp_path)
    manifest = _convert('vqa', [q, a], tmp_path / 'vqa', images)
    assert manifest['splits']['val']['num_samples'] == 3
    samples = _read(
        tmp_path / 'vqa',
        tokenizer_dir,
        question_prompt='{question}\nAnswer the question using a single word or phrase.',
    )
    assert [s['meta']['question_id'] for s in samples] == [101, 201, 202]
    assert samples[1]['answer'] == ['blue'] * 8 + ['green'] * 2 and samples[2]['task'] == 'number'
    train = _read(tmp_path / 'vqa', tokenizer_dir, mode='train')
    assert sorted(_supervised(tokenizer_dir, s) for s in train) == [
        '2<|im_end|>',
        'blue<|im_end|>',
        'red<|im_end|>',
    ]

    text_images = tmp_path / 'textvqa'
    sign = _image(text_images / 'abc.jpg', (9, 9, 9), fmt='JPEG')
    textvqa = {
        'dataset_type': 'val',
        'data': [
            {
                'question': 'what does the sign say',
                'image_id': 'abc',
                'question_id': 5,
                'answers': ['stop'] * 10,
            }
        ],
    }
    ocr = {'data': [{'image_id': 'abc', 'ocr_tokens': ['stop', 'sign']}]}
    (tmp_path / 'TextVQA_0.5.1_val.json').write_text(json.dumps(textvqa))
    (tmp_path / 'TextVQA_Rosetta_OCR_v0.2_val.json').write_text(json.dumps(ocr))
    _convert(
        'textvqa',
        [tmp_path / 'TextVQA_0.5.1_val.json', tmp_path / 'TextVQA_Rosetta_OCR_v0.2_val.json'],
        tmp_path / 'tv',
        text_images,
    )
    assert dict(_members(tmp_path / 'tv'))['000000000.jpg'] == sign
    (query,) = _read(
        tmp_path / 'tv', tokenizer_dir, question_prompt='{question}\nReference OCR token: {ocr_tokens}'
    )
    from vlkit.tokenization import build_tokenizer

    assert 'what does the sign say\nReference OCR token: stop, sign' in build_tokenizer(tokenizer_dir).decode(
        query['input_ids']
    )

    gqa = {
        '201': {
            'imageId': 'n1',
            'question': 'what colour',
            'answer': 'red',
            'types': {'structural': 'query'},
        },
        '202': {'imageId': 'n1', 'question': 'is it blue', 'answer': 'no', 'types': {'structural': 'verify'}},
    }
    _image(tmp_path / 'gqa/n1.jpg', (200, 0, 0), fmt='JPEG')
    (tmp_path / 'testdev_balanced_questions.json').write_text(json.dumps(gqa))
    manifest = _convert(
        'gqa', [tmp_path / 'testdev_balanced_questions.json'], tmp_path / 'g', tmp_path / 'gqa'
    )
    assert list(manifest['splits']) == ['test-dev']
    assert [
        (s['meta']['question_id'], s['answer'], s['task']) for s in _read(tmp_path / 'g', tokenizer_dir)
    ] == [('201', ['red'], 'query'), ('202', ['no'], 'verify')]

    _image(tmp_path / 'vizwiz/VizWiz_val_00000000.jpg', (5, 5, 5), fmt='PNG')  # a PNG named .jpg
    vizwiz = [
        {
            'image': 'VizWiz_val_00000000.jpg',
            'question': 'what is this',
            'answerable': 0,
            'answer_type': 'unanswerable',
            'answers': [{'answer': 'unanswerable', 'answer_confidence': 'yes'}] * 9
            + [{'answer': 'sofa', 'answer_confidence': 'no'}],
        }
    ]
    (tmp_path / 'val.json').write_text(json.dumps(vizwiz))
    _convert('vizwiz', [tmp_path / 'val.json'], tmp_path / 'vw', tmp_path / 'vizwiz')
    assert '000000000.png' in dict(_members(tmp_path / 'vw'))
    (query,) = _read(tmp_path / 'vw', tokenizer_dir)
    assert query['meta'] == {'image_name': 'VizWiz_val_00000000.jpg', 'answer_type': 'unanswerable'}
    assert query['answer'].count('unanswerable') == 9 and query['task'] == 'unanswerable'


def test_a_repeated_question_id_is_skipped_and_named(tmp_path):
    q, a, images = write_vqa_pair(tmp_path)
    questions = json.loads(q.read_text())
    questions['questions'].append(dict(questions['questions'][0], question='asked again'))  # id 101 again
    q.write_text(json.dumps(questions))
    manifest = _convert('vqa', [q, a], tmp_path / 'vqa', images)
    assert manifest['splits']['val']['num_samples'] == 3 and manifest['skipped'] == {'duplicate_id': 1}
    (skip,) = json.loads((tmp_path / 'vqa' / 'data_skips.json').read_text())['records']
    assert (skip['id'], skip['reason'], skip['key']) == (101, 'duplicate_id', '000000003')


def test_vqav2_test_dev_questions_find_their_images_in_test2015(tmp_path):
    image = _image(tmp_path / 'coco/test2015/COCO_test2015_000000000007.jpg', (1, 2, 3), fmt='JPEG')
    questions = {
        'data_subtype': 'test-dev2015',
        'questions': [{'image_id': 7, 'question': 'what colour', 'question_id': 70}],
    }
    q = tmp_path / 'v2_OpenEnded_mscoco_test-dev2015_questions.json'
    q.write_text(json.dumps(questions))
    manifest = _convert('vqa', [q], tmp_path / 'td', tmp_path / 'coco')
    assert manifest['splits']['test-dev']['num_samples'] == 1 and manifest['skipped'] == {}
    assert dict(_members(tmp_path / 'td'))['000000000.jpg'] == image


# -- interleaved documents ----------------------------------------------------------------------------------


def test_obelics_and_mmc4_documents(tmp_path, tokenizer_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = tmp_path / 'web'
    cat = _image(images / 'cat.jpg', (100, 100, 0), fmt='JPEG')
    dog = _image(images / 'dog.png', (0, 100, 100), fmt='PNG')
    rows = {
        'images': [
            ['http://x.org/a/cat.jpg', None, 'http://x.org/dog.png?s=1', None],
            [None, None],
            [None, 'http://x.org/cat.jpg'],
        ],
        'texts': [
            [None, 'a cat sleeps', None, 'two dogs play'],
            ['a red bus', None],
            ['describe the image', None],
        ],
    }
    parquet = tmp_path / 'obelics-00000.parquet'
    pq.write_table(pa.table(rows), parquet)
    refused = run_tool('prepare_data.py', 'obelics', str(parquet), '--out', str(tmp_path / 'ob'), check=False)
    assert refused.returncode == 1 and "format 'obelics': image URLs need a url_map" in refused.stderr
    assert '--option by_file_name=true' in refused.stderr and not (tmp_path / 'ob').exists()
    with pytest.raises(ValueError, match="by_file_name must be true or false, got 'False'"):
        _convert('obelics', [parquet], tmp_path / 'ob', images, by_file_name='False')
    manifest = _convert('obelics', [parquet], tmp_path / 'ob', images, by_file_name=True)
    assert manifest['num_samples'] == 2 and manifest['skipped'] == {'empty_position': 1}
    members = dict(_members(tmp_path / 'ob'))
    assert (
        members['000000000.0.jpg'] == cat
        and members['000000000.1.png'] == dog
        and members['000000002.0.jpg'] == cat  # another URL with the same file name: the same file
    )
    other_cat = _image(images / 'pages/cat-2.jpg', (0, 0, 100), fmt='JPEG')
    urls = {'http://x.org/a/cat.jpg': 'cat.jpg', 'http://x.org/dog.png?s=1': 'dog.png'}
    (tmp_path / 'urls.json').write_text(json.dumps({**urls, 'http://x.org/cat.jpg': 'pages/cat-2.jpg'}))
    _convert('obelics', [parquet], tmp_path / 'ob_map', images, url_map=str(tmp_path / 'urls.json'))
    mapped = dict(_members(tmp_path / 'ob_map'))
    assert mapped['000000000.0.jpg'] == cat and mapped['000000002.0.jpg'] == other_cat
    from vlkit.data import InterleavedShards

    doc = next(
        iter(
            InterleavedShards(
                [str(tmp_path / 'ob' / 'train-00000.tar')],
                tokenizer=tokenizer_dir,
                image_size=16,
                mode='train',
                shuffle_buffer=1,
                seed=0,
            )
        )
    )
    assert doc['images'].shape[0] in (1, 2)

    doc = {
        'url': 'u',
        'text_list': ['a red bus', 'a cat sleeps', 'two dogs play'],
        'image_info': [
            {'image_name': 'dog.png', 'matched_text_index': 2, 'matched_sim': 0.3},
            {'image_name': 'cat.jpg', 'matched_text_index': 1, 'matched_sim': 0.3},
        ],
    }
    (tmp_path / 'docs.jsonl').write_text(json.dumps(doc) + '\n')
    _convert('mmc4', [tmp_path / 'docs.jsonl'], tmp_path / 'mm', images)
    members = dict(_members(tmp_path / 'mm'))
    record = json.loads(members['000000000.json'])
    assert record['texts'] == ['a red bus', None, ' a cat sleeps', None, ' two dogs play']
    assert members['000000000.0.jpg'] == cat and members['000000000.1.png'] == dog  # each before its sentence
    (read,) = list(
        InterleavedShards(
            [str(tmp_path / 'mm' / 'train-00000.tar')],
            tokenizer=tokenizer_dir,
            image_size=16,
            mode='generate',
        )
    )
    assert read['answer'] == 'two dogs play' and read['images'].shape[0] == 2


def _mmc4_doc(*names: str) -> str:
    """An MMC4 line with one sentence per image, each image matched to its sentence."""
    infos = [{'image_name': n, 'matched_text_index': i, 'matched_sim': 0.3} for i, n in enumerate(names)]
    return json.dumps({'text_list': [f'sentence {i}' for i in range(len(names))], 'image_info': infos})


def test_a_document_loses_only_its_unreadable_images(tmp_path):
    folder = tmp_path / 'web' / 'docs_shard_0_images'  # where MMC4's download_images.py puts them
    cat, dog = _image(folder / 'cat.jpg', (100, 100, 0), fmt='JPEG'), _image(folder / 'dog.png', (0, 9, 9))
    (folder / 'svg.jpg').write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    source = tmp_path / 'docs_shard_0.jsonl'
    source.write_text(
        _mmc4_doc('cat.jpg', 'dead.jpg', 'dog.png') + '\n' + _mmc4_doc('gone.jpg', 'svg.jpg') + '\n'
    )
    manifest = _convert('mmc4', [source], tmp_path / 'mm', tmp_path / 'web', image_folder='{shard}_images')
    assert manifest['num_samples'] == 1 and manifest['skipped'] == {'missing_image': 1}  # none left: skipped
    assert manifest['images_dropped'] == {'missing_image': 1}
    members = dict(_members(tmp_path / 'mm'))
    record = json.loads(members['000000000.json'])
    assert record['texts'] == [
        None,
        'sentence 0',
        ' sentence 1',
        None,
        ' sentence 2',
    ]  # dead.jpg's place gone
    assert record['images'] == ['cat.jpg', None, None, 'dog.png', None]
    assert members['000000000.0.jpg'] == cat and members['000000000.1.png'] == dog
    listed = json.loads((tmp_path / 'mm' / 'data_skips.json').read_text())
    assert [(r['key'], r['reason']) for r in listed['records']] == [('000000001', 'missing_image')]
    assert [(r['key'], r['reason']) for r in listed['dropped_images']] == [('000000000', 'missing_image')]
    assert 'dead.jpg' in listed['dropped_images'][0]['message']
    assert 'none of its 2 images' in listed['records'][0]['message']
    assert listed['images_dropped'] == {'missing_image': 1}
    fmt = DATA_FORMATS.build(dict(type='mmc4', image_folder='{shard}_images'))
    with pytest.raises(ConversionError, match=r'record 000000000 .*missing_image.*dead.jpg'):
        convert(fmt, [str(source)], tmp_path / 'strict', Options(images=str(tmp_path / 'web'), strict=True))
    with pytest.raises(ValueError, match=r"image_folder '\{name\}_images' may hold only \{shard\}"):
        DATA_FORMATS.build(dict(type='mmc4', image_folder='{name}_images'))


def test_mmc4_reads_its_zipped_and_gzipped_jsonl_as_shipped(tmp_path):
    import gzip
    import zipfile

    web = tmp_path / 'web'
    cat = _image(web / 'docs_shard_0_v3_images' / 'cat.jpg', (100, 100, 0), fmt='JPEG')
    lines = (
        (_mmc4_doc('cat.jpg') + '\n').encode()
        + b'\xff\xfe not utf-8\n'
        + (_mmc4_doc('cat.jpg') + '\n').encode()
    )
    plain = tmp_path / 'plain' / 'docs_shard_0_v3.jsonl'
    plain.parent.mkdir()
    plain.write_bytes(lines)
    zipped = tmp_path / 'docs_shard_0_v3.jsonl.zip'  # as MMC4 ships each shard
    with zipfile.ZipFile(zipped, 'w') as archive:
        archive.writestr('docs_shard_0_v3.jsonl', lines)
    gzipped = tmp_path / 'docs_shard_0_v3.jsonl.gz'
    gzipped.write_bytes(gzip.compress(lines))
    converted = {}
    for source in (plain, zipped, gzipped):
        out = tmp_path / f'out_{source.name}'
        manifest = _convert(
            'mmc4', [source], out, web, image_folder='{shard}_images'
        )  # shard: docs_shard_0_v3
        assert manifest['num_samples'] == 2 and manifest['skipped'] == {'bad_json': 1}, source.name
        converted[source.name] = _members(out)
    assert converted['docs_shard_0_v3.jsonl.zip'] == converted['docs_shard_0_v3.jsonl']
    assert converted['docs_shard_0_v3.jsonl.gz'] == converted['docs_shard_0_v3.jsonl']
    assert dict(converted['docs_shard_0_v3.jsonl'])['000000000.0.jpg'] == cat
    questions = {'questions': [{'question_id': 1, 'question': 'what colour?'}]}
    with zipfile.ZipFile(tmp_path / 'v2_Questions_Val_mscoco.zip', 'w') as archive:  # as VQAv2 ships them
        archive.writestr('v2_OpenEnded_mscoco_val2014_questions.json', json.dumps(questions))
    assert load_json(str(tmp_path / 'v2_Questions_Val_mscoco.zip')) == questions
    two = tmp_path / 'two.zip'
    with zipfile.ZipFile(two, 'w') as archive:
        archive.writestr('a.jsonl', lines)
        archive.writestr('b.jsonl', lines)
    with pytest.raises(
        ValueError,
        match=r"two.zip: a zipped source must hold exactly one file .* holds 2: \['a.jsonl', 'b.jsonl'\]",
    ):
        _convert('mmc4', [two], tmp_path / 'out_two', web)


def test_a_url_the_url_map_lacks_drops_that_image_only(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cat = _image(tmp_path / 'web' / 'cat.jpg', (100, 100, 0), fmt='JPEG')
    rows = {
        'images': [['http://x.org/cat.jpg', None, 'http://x.org/unmapped.jpg']],
        'texts': [[None, 'a cat', None]],
    }
    pq.write_table(pa.table(rows), tmp_path / 'obelics.parquet')
    (tmp_path / 'urls.json').write_text(json.dumps({'http://x.org/cat.jpg': 'cat.jpg'}))
    url_map = str(tmp_path / 'urls.json')
    manifest = _convert(
        'obelics', [tmp_path / 'obelics.parquet'], tmp_path / 'ob', tmp_path / 'web', url_map=url_map
    )
    assert manifest['num_samples'] == 1 and manifest['images_dropped'] == {'missing_image': 1}
    members = dict(_members(tmp_path / 'ob'))
    assert json.loads(members['000000000.json'])['images'] == ['http://x.org/cat.jpg', None]
    assert members['000000000.0.jpg'] == cat and len(members) == 2


# -- img2dataset, read directly -----------------------------------------------------------------------------


def test_img2dataset_shards_are_read_directly(tmp_path, tokenizer_dir):
    from vlkit.data import Img2DatasetShards

    photo = _image(tmp_path / 'p.jpg', (1, 2, 3), fmt='JPEG')
    folder = tmp_path / 'laion'
    folder.mkdir()
    meta = lambda k: json.dumps({'key': k, 'url': f'http://x/{k}.jpg', 'status': 'success'}).encode()  # noqa: E731
    write_shard(
        folder / '00000.tar',
        [
            ('000000000.jpg', photo),
            ('000000000.txt', b'a red bus'),
            ('000000000.json', meta('0')),
            ('000000001.jpg', photo),
            ('000000001.txt', b'a cat sleeps'),
            ('000000001.json', meta('1')),
        ],
    )
    write_shard(folder / '00001.tar', [('000010000.jpg', photo), ('000010000.txt', b'two dogs play')])
    with open(folder / '00001.tar', 'r+b') as f:  # a truncated tar
        f.truncate(700)
    (folder / '00000_stats.json').write_text(json.dumps({'successes': 2}))
    ds = Img2DatasetShards(
        str(folder), tokenizer=tokenizer_dir, image_size=16, mode='generate', template='chat'
    )
    samples = list(ds)
    assert len(ds) == 2 and [s['answer'] for s in samples] == ['a red bus', 'a cat sleeps']
    pattern = Img2DatasetShards(str(folder / '{00000..00001}.tar'), tokenizer=tokenizer_dir, image_size=16)
    assert len(pattern) == 2  # a brace pattern finds the stats beside its shards too
    assert set(ds.skipped.counts) == {
        'truncated_tar'
    }  # counted by the stage that met it (and the one around it)
    from vlkit.data.shards import _decode_image

    assert samples[0]['image'].shape == (3, 16, 16) and _decode_image(photo).size == (24, 16)
    train = Img2DatasetShards(
        str(folder), tokenizer=tokenizer_dir, image_size=16, mode='train', template='plain', shuffle_buffer=1
    )
    sample = next(iter(train))
    assert _supervised(tokenizer_dir, sample) in ('a red bus\n', 'a cat sleeps\n')  # LLaVA's stage 1


# -- killed and run again -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_conversion_rerun_gives_the_same_shards(tmp_path):
    images = tmp_path / 'images'
    for i in range(8):
        _image(images / f'{i}.jpg', (i * 30, 0, 0), size=(300, 200), fmt='PNG')
    turn = lambda i: [{'from': 'human', 'value': '<image>\nwhat'}, {'from': 'gpt', 'value': f'answer {i}'}]  # noqa: E731
    records = [{'id': i, 'image': f'{i % 8}.jpg', 'conversations': turn(i)} for i in range(3000)]
    records[5]['image'] = 'missing.jpg'
    (tmp_path / 'src.json').write_text(json.dumps(records))
    args = [str(tmp_path / 'src.json'), '--images', str(images), '--shard-size', '100', '--workers', '2']
    run_tool('prepare_data.py', 'llava', *args, '--out', str(tmp_path / 'straight'))

    killed = tmp_path / 'killed'
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, str(ROOT / 'tools/prepare_data.py'), 'llava', *args, '--out', str(killed)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while len(list((killed / '_progress').glob('*.json'))) < 5 and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    complete = len(list((killed / '_progress').glob('*.json')))
    assert 5 <= complete < 30 and not (killed / 'manifest.json').exists()
    (killed / 'train-00029.tar.tmp').write_bytes(b'half a shard')  # what a kill mid-write leaves
    (killed / 'train-00028.tar').write_bytes(b'renamed, its counts never written')
    before = {p.name: p.stat().st_mtime_ns for p in (killed / '_progress').glob('*.json')}
    run_tool('prepare_data.py', 'llava', *args, '--out', str(killed))
    after = {p.name: p.stat().st_mtime_ns for p in (killed / '_progress').glob('*.json')}
    assert all(after[name] == t for name, t in before.items())  # complete shards were kept, not redone
    assert not list(killed.glob('*.tmp'))
    assert _members(killed) == _members(tmp_path / 'straight')  # keys, bytes and order
    manifest = json.loads((killed / 'manifest.json').read_text())
    assert manifest['num_samples'] == 2999 and manifest['skipped'] == {'missing_image': 1}


def test_a_config_on_data_not_prepared_is_refused_naming_the_folder(synthetic_root, tmp_path):
    from vlkit.config import load_config
    from vlkit.config_check import ConfigError, check_config
    from vlkit.testing import tiny_options

    missing = tmp_path / 'llava_instruct'
    options = {**tiny_options(synthetic_root, 2), 'train_dataloader.dataset.data_dir': str(missing)}
    with pytest.raises(
        ConfigError, match=f'train_dataloader.dataset.data_dir: {missing} has no manifest.json'
    ):
        check_config(load_config('configs/llava15_instruct.py', options))
    with pytest.raises(FileNotFoundError, match='prepare it with tools/prepare_data.py'):
        PreparedShards(str(missing), tokenizer=dict(type='synthetic_tokenizer', data_root=synthetic_root))


def test_k_shot_prompts_on_prepared_questions(tmp_path, tokenizer_dir):
    """tools/test.py --benchmark --shots K: demonstrations (with their answers) from the folder's train split
    before each query, its meta kept for the submission file."""
    from vlkit.evaluation import FewShotDataset

    q, a, images = write_vqa_pair(tmp_path)
    _convert('vqa', [q, a], tmp_path / 'vqa', images)
    common = dict(tokenizer=tokenizer_dir, image_size=16, template='chat', question_prompt='{question}')
    queries = PreparedShards(str(tmp_path / 'vqa'), mode='generate', **common)
    demos = PreparedShards(str(tmp_path / 'vqa'), mode='train', shuffle_buffer=1, **common)
    shot = next(iter(FewShotDataset(queries, demos, shots=1, pool_size=3)))
    (query,) = [s for s in queries if s['meta'] == shot['meta']]
    assert shot['input_ids'][-len(query['input_ids']) :] == query['input_ids'] and shot['shots'] == 1
    assert len(shot['input_ids']) > len(query['input_ids']) and shot['images'].shape[0] == 2
    from vlkit.tokenization import build_tokenizer

    text = build_tokenizer(tokenizer_dir).decode(shot['input_ids'])
    assert text.count('<|im_start|>assistant\n') == 2 and text.count('<|im_end|>') == 3  # demo answered


def test_resize_and_max_samples(tmp_path):
    """--resize SIDE downscales to that shorter side (re-encoding); --max-samples N takes the first N
    records."""
    path, images, source = _llava_source(tmp_path)
    fmt = DATA_FORMATS.build(dict(type='llava'))
    manifest = convert(
        fmt, [str(path)], tmp_path / 'out', Options(images=str(images), resize=8), max_records=2
    )
    assert manifest['num_records'] == 2 and manifest['num_samples'] == 2
    members = dict(_members(tmp_path / 'out'))
    assert members['000000000.jpg'] != source['a']
    assert Image.open(io.BytesIO(members['000000000.jpg'])).size == (12, 8)  # 24 x 16 -> shorter side 8
    assert Image.open(io.BytesIO(members['000000001.png'])).size == (12, 8)  # the GIF re-encoded as PNG
