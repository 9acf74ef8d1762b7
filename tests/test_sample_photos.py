"""scikit-image's sample photos with one-line captions (vlkit.data.SamplePhotoCaptions): every photo with the
first line of its description, written once as a caption shard, read as caption samples."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from vlkit.constants import IGNORE_INDEX
from vlkit.data import SamplePhotoCaptions
from vlkit.data.sample_photos import PHOTOS, SHARD, ensure_sample_photo_shards

pytestmark = pytest.mark.real  # scikit-image comes with the real extra


@pytest.fixture(scope='module')
def photos_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp('photos'))


def test_the_shard_holds_every_photo_with_its_description(photos_root):
    tmp_path = Path(photos_root)
    path = ensure_sample_photo_shards(tmp_path)
    with tarfile.open(path) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert sorted(members) == sorted([f'{n}.png' for n in PHOTOS] + [f'{n}.txt' for n in PHOTOS])
    assert members['coffee.txt'].decode() == 'Coffee cup.'
    assert members['chelsea.txt'].decode() == 'Chelsea the cat.'
    assert members['astronaut.txt'].decode() == 'Color image of the astronaut Eileen Collins.'
    written = (tmp_path / SHARD).stat().st_mtime_ns
    assert ensure_sample_photo_shards(tmp_path) == path and (tmp_path / SHARD).stat().st_mtime_ns == written


def test_samples_carry_their_caption_as_the_answer(synthetic_root, photos_root):
    tokenizer = dict(type='synthetic_tokenizer', data_root=synthetic_root)
    dataset = SamplePhotoCaptions(data_root=photos_root, tokenizer=tokenizer, image_size=32, mode='generate')
    samples = list(dataset)
    assert len(samples) == len(dataset) == len(PHOTOS)
    assert {s['answer'] for s in samples} >= {'Coffee cup.', 'Grass.', 'Human retina.'}
    assert all(s['image'].shape == (3, 32, 32) and s['task'] == 'caption' for s in samples)
    train = next(iter(SamplePhotoCaptions(data_root=photos_root, tokenizer=tokenizer, image_size=32)))
    assert any(label != IGNORE_INDEX for label in train['labels'])
