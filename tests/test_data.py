import io
import itertools
import json
import threading

import pytest
import torch
from PIL import Image

from tests.helpers import write_shard
from vlkit.data import ConversationShards, SyntheticShards, synthetic, vlm_collate
from vlkit.data.prepare import ensure_synthetic_data
from vlkit.data.skips import BadSampleError


def _png(color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', (32, 32), color).save(buf, format='PNG')
    return buf.getvalue()


def _conversation(answer='red') -> bytes:
    turns = [
        {'from': 'human', 'value': '<image>\nwhat colour is the circle ?'},
        {'from': 'gpt', 'value': answer},
    ]
    return json.dumps({'conversations': turns, 'task': 'colour'}).encode()


def _dataset(shards, synthetic_root, **kwargs):
    tokenizer = dict(type='synthetic_tokenizer', data_root=synthetic_root)
    return ConversationShards(shards, tokenizer, image_size=32, mode='generate', **kwargs)


@pytest.fixture
def bad_shard(tmp_path):
    return write_shard(
        tmp_path / 'bad-00000.tar',
        [
            ('a.png', _png()),
            ('a.json', _conversation('red')),
            ('b.png', b'\x89PNG\r\n\x1a\n this is not an image'),
            ('b.json', _conversation('blue')),
            ('c.png', _png()),  # no .json / .txt: a field the format needs is missing
            ('d.png', _png((10, 10, 200))),
            ('d.json', _conversation('blue')),
        ],
    )


def test_corrupt_and_incomplete_samples_are_skipped_and_counted(bad_shard, synthetic_root):
    ds = _dataset([bad_shard], synthetic_root)
    samples = list(ds)
    assert [s['answer'] for s in samples] == ['red', 'blue']
    assert ds.skipped.counts == {'corrupt_image': 1, 'missing_field': 1}


def test_strict_mode_fails_on_the_first_bad_sample(bad_shard, synthetic_root):
    with pytest.raises(Exception, match='image'):
        list(_dataset([bad_shard], synthetic_root, strict=True))


def test_missing_shard_is_skipped_and_counted(bad_shard, tmp_path, synthetic_root):
    ds = _dataset([str(tmp_path / 'nowhere-00000.tar'), bad_shard], synthetic_root)
    assert len(list(ds)) == 2
    assert ds.skipped.counts['missing_shard'] == 1


@pytest.mark.parametrize('case', ['missing shards', 'no readable sample'])
def test_a_training_stream_with_nothing_readable_stops_naming_the_reasons(tmp_path, synthetic_root, case):
    """Resampled shards never end: without the guard, a source none of whose samples can be read would keep
    the first batch waiting forever."""
    if case == 'missing shards':
        shards = [str(tmp_path / 'gone-00000.tar'), str(tmp_path / 'gone-00001.tar')]
    else:
        shards = [write_shard(tmp_path / 'x-00000.tar', [('k.png', _png()), ('j.png', _png())])]
    tokenizer = dict(type='synthetic_tokenizer', data_root=synthetic_root)
    ds = ConversationShards(shards, tokenizer, image_size=32, mode='train')
    ds.skipped.max_consecutive = 50
    reason = 'missing_shard' if case == 'missing shards' else 'missing_field'
    with pytest.raises(BadSampleError, match=rf"50 bad samples or shards in a row .*'{reason}': 50"):
        next(iter(ds))


def test_caption_pairs_are_read(tmp_path, synthetic_root):
    members = [('k.png', _png()), ('k.txt', b'red'), ('e.png', _png()), ('e.txt', b' ')]  # img2dataset: ""
    ds = _dataset([write_shard(tmp_path / 'cap-00000.tar', members)], synthetic_root)
    (sample,) = list(ds)
    assert sample['answer'] == 'red' and sample['task'] == 'caption'
    assert ds.skipped.counts == {'empty_caption': 1}


def _synthetic(split, synthetic_root, **kwargs):
    tokenizer = dict(type='synthetic_tokenizer', data_root=synthetic_root)
    return SyntheticShards(split, data_root=synthetic_root, image_size=32, tokenizer=tokenizer, **kwargs)


def test_train_stream_is_endless_and_collates(synthetic_root):
    ds = _synthetic('train', synthetic_root)
    samples = list(itertools.islice(iter(ds), len(ds) + 10))  # past one pass: resampled shards never end
    assert len(samples) == len(ds) + 10
    batch = vlm_collate([dict(s, __key__='x') for s in samples[:4]])
    assert not any(k.startswith('__') for k in batch)
    assert batch['images'].shape == (4, 3, 32, 32)
    assert batch['labels'].shape == batch['input_ids'].shape == batch['attention_mask'].shape
    assert (batch['attention_mask'][:, 0] == 1).all()  # right padding for training


def test_generation_batches_are_left_padded(synthetic_root):
    ds = _synthetic('val', synthetic_root, mode='generate')
    samples = list(ds)
    assert len(samples) == len(ds) == 60
    batch = vlm_collate(samples[:10])
    assert (batch['attention_mask'][:, -1] == 1).all() and len(batch['answers']) == 10


def test_blank_images_are_constant(synthetic_root):
    ds = _synthetic('val', synthetic_root, mode='generate', blank_images=True)
    image = next(iter(ds))['image']
    assert image.std() == 0


def test_synthetic_benchmark_is_balanced_and_reports_its_prior(synthetic_root):
    manifest = json.loads((ensure_synthetic_data(synthetic_root) / 'manifest.json').read_text())
    prior = manifest['splits']['val']['question_only_prior']
    assert set(prior) == {*synthetic.TASKS, 'overall'}
    assert prior['overall'] < 40  # questions alone answer near chance


def test_unknown_split_is_named(synthetic_root):
    with pytest.raises(KeyError, match="split 'dev' is not in"):
        SyntheticShards('dev', data_root=synthetic_root, tokenizer=dict(type='synthetic_tokenizer'))


def test_generating_the_benchmark_keeps_the_encoder_cache_beside_it(tmp_path):
    root = tmp_path / 'synthetic'
    (root / 'encoders').mkdir(parents=True)
    (root / 'encoders' / 'abc.pth').write_bytes(b'weights')  # cached before the shards were made
    ensure_synthetic_data(root, {'train': 20, 'val': 10, 'test': 10}, 32, shard_size=10, verbose=False)
    assert (root / 'encoders' / 'abc.pth').read_bytes() == b'weights'
    assert len(list(root.glob('train-*.tar'))) == 2 and (root / 'manifest.json').exists()
    ensure_synthetic_data(root, {'train': 10, 'val': 10, 'test': 10}, 32, shard_size=10, verbose=False)
    assert len(list(root.glob('train-*.tar'))) == 1 and (root / 'encoders' / 'abc.pth').exists()


class _ThreadsAfterFirstSample(torch.utils.data.IterableDataset):
    """The names of the threads alive once ``dataset`` has made its first sample, where it is iterated."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __iter__(self):
        samples = iter(self.dataset)  # held while the threads are listed: closing it stops them
        next(samples)
        yield sorted(thread.name for thread in threading.enumerate())
        samples.close()


def test_samples_are_read_ahead_in_the_training_process_only(synthetic_root):
    probe = _ThreadsAfterFirstSample(_synthetic('train', synthetic_root))
    in_process = next(iter(probe))
    assert 'vlkit-read-ahead' in in_process  # num_workers=0: a thread overlaps the step
    assert not any(name.startswith('vlkit-decode') for name in in_process)  # the cores are the model's
    loader = torch.utils.data.DataLoader(probe, batch_size=None, num_workers=1)
    in_worker = next(iter(loader))
    assert 'vlkit-read-ahead' not in in_worker  # a worker already works ahead of the step
    # and it decodes images in its pool (2 at most; the pool starts a thread only when none is idle: the
    # tests of map_in_threads show two at work at once)
    assert 1 <= sum(name.startswith('vlkit-decode') for name in in_worker) <= 2


def _in_a_worker(dataset, count=None) -> list[dict]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1)
    return list(itertools.islice(loader, count))


@pytest.mark.parametrize('mode', ['train', 'generate'])
def test_decoding_in_threads_gives_the_same_samples_in_the_same_order(synthetic_root, mode):
    count = 80 if mode == 'train' else None  # past the shuffle buffer's first fill; all 60 val samples
    split = 'train' if mode == 'train' else 'val'
    threaded = _in_a_worker(_synthetic(split, synthetic_root, mode=mode, shuffle_buffer=20), count)
    inline = _in_a_worker(
        _synthetic(split, synthetic_root, mode=mode, shuffle_buffer=20, decode_threads=0), count
    )
    assert len(threaded) == len(inline) == (count or 60)
    for a, b in zip(threaded, inline, strict=True):
        assert a['input_ids'] == b['input_ids'] and a.get('answer') == b.get('answer')
        assert torch.equal(a['image'], b['image'])


def test_a_bad_image_decoded_in_a_thread_is_skipped_at_its_place(bad_shard, synthetic_root):
    for threads in (0, 2):
        samples = _in_a_worker(_dataset([bad_shard], synthetic_root, decode_threads=threads))
        assert [s['answer'] for s in samples] == ['red', 'blue']
        assert [s['image'][0, 0, 0].item() for s in samples] == pytest.approx(
            [200 / 127.5 - 1, 10 / 127.5 - 1]
        )
