"""vlkit's tar stage reads the same samples as webdataset's, and names what is wrong with a shard."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest
import webdataset as wds

from tests.helpers import write_shard
from vlkit.data.tar_stream import tar_members, tar_samples

MEMBERS = [
    ('a.json', b'{"x": 1}'), ('a.PNG', b'\x89PNG' * 40), ('b.0.png', b'zero'), ('b.1.jpg', b'one' * 300),
    ('b.json', b'{}'), ('__meta__', b'skipped'), ('dir/c.txt', b'caption'), ('x' * 150 + '.txt', b'long'),
]  # fmt: skip


def _webdataset(urls: list[str]) -> list[dict]:
    return list(wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()))


def _reraise(exn: BaseException) -> bool:
    raise exn


def _ours(urls: list[str], handler=_reraise) -> list[dict]:
    return list(tar_samples(handler)({'url': u} for u in urls))


def test_the_samples_are_webdatasets_own(tmp_path, synthetic_root):
    made = write_shard(tmp_path / 'made.tar', MEMBERS)
    synthetic = sorted(str(p) for p in __import__('pathlib').Path(synthetic_root).glob('train-*.tar'))[:2]
    for urls in ([made], synthetic):
        ours = _ours(urls)
        assert ours == _webdataset(urls) and len(ours) > 1
    keys = [s['__key__'] for s in _ours([made])]
    assert keys == ['a', 'b', 'dir/c', 'x' * 150]  # grouped by key; long names; metadata skipped
    assert set(_ours([made])[1]) == {'__key__', '__url__', '0.png', '1.jpg', 'json'}


def test_gzip_compressed_shards_are_read(tmp_path):
    plain = write_shard(tmp_path / 'p.tar', MEMBERS[:3])
    packed = tmp_path / 'p.tar.gz'
    packed.write_bytes(gzip.compress(open(plain, 'rb').read()))
    drop_url = lambda samples: [{k: v for k, v in s.items() if k != '__url__'} for s in samples]  # noqa: E731
    assert drop_url(_ours([str(packed)])) == drop_url(_ours([plain])) == drop_url(_webdataset([str(packed)]))
    # through a pipe (and so a URL), whose stream cannot be peeked at: the same samples
    for url in (f'pipe:cat {packed}', f'pipe:cat {plain}'):
        assert drop_url(_ours([url])) == drop_url(_ours([plain]))


def test_a_truncated_shard_keeps_its_whole_samples_and_names_itself(tmp_path):
    path = write_shard(tmp_path / 't.tar', MEMBERS[:5])
    data = open(path, 'rb').read()
    (tmp_path / 'cut.tar').write_bytes(data[: len(data) // 2])
    errors = []
    samples = _ours([str(tmp_path / 'cut.tar'), path], handler=lambda exn: errors.append(exn) or True)
    assert [s['__key__'] for s in samples][:1] == ['a'] and samples[-2:] == _ours([path])
    assert len(errors) == 1 and isinstance(errors[0], tarfile.ReadError)
    assert errors[0].shard == str(tmp_path / 'cut.tar') and 'unexpected end of data' in str(errors[0])


def test_a_corrupt_header_and_a_missing_shard_are_errors(tmp_path):
    path = write_shard(tmp_path / 'h.tar', MEMBERS[:2])
    data = bytearray(open(path, 'rb').read())
    data[130] ^= 0xFF  # the first member's size field
    with pytest.raises(tarfile.ReadError, match='bad tar header checksum'):
        list(tar_members(io.BytesIO(bytes(data))))
    with pytest.raises(FileNotFoundError):
        _ours([str(tmp_path / 'nope.tar')])
    with pytest.raises(ValueError, match='duplicate file name'):
        _ours([write_shard(tmp_path / 'd.tar', [('k.txt', b'1'), ('k.TXT', b'2')])])
