"""Generates the synthetic benchmark and its tokenizer once, on first use, into a cache directory.

The directory is ``data/synthetic`` unless a config's ``data_root`` or the ``VLKIT_DATA_ROOT``
environment variable moves it. Generation writes into a temporary sibling directory and renames it when
complete, under a file lock, so concurrent processes (DDP ranks, parallel tests) never see half a split.
Variants of the benchmark (:data:`vlkit.data.synthetic.VARIANTS`) are generated the same way, on first
use, into ``{data_root}/variants/{name}``; the default benchmark and its manifest stay as they are.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from filelock import FileLock
from tqdm import tqdm

from ..constants import IMAGE_TOKEN
from ..registry import FUNCTIONS, shared_settings
from . import synthetic

DEFAULT_SPLITS = {'train': 20_000, 'val': 1_000, 'test': 1_000}


def default_data_root() -> str:
    return os.environ.get('VLKIT_DATA_ROOT', 'data/synthetic')


def _expected_manifest(splits: dict[str, int], image_size: int, shard_size: int) -> dict:
    return {
        'format_version': synthetic.FORMAT_VERSION,
        'image_size': image_size,
        'shard_size': shard_size,
        'sizes': dict(splits),
    }


def _manifest_matches(root: Path, expected: dict) -> bool:
    path = root / 'manifest.json'
    if not path.exists():
        return False
    manifest = json.loads(path.read_text())
    return all(manifest.get(k) == v for k, v in expected.items())


def ensure_synthetic_data(
    data_root: str | os.PathLike | None = None,
    splits: dict[str, int] | None = None,
    image_size: int = synthetic.BASE_SIZE,
    shard_size: int = 1_000,
    verbose: bool = True,
) -> Path:
    """Returns the benchmark's directory, generating shards, manifest and tokenizer if they are missing.

    With ``splits=None`` any complete benchmark already in ``data_root`` is used as it is (whatever its
    sizes, e.g. one made by ``tools/make_synthetic.py``); otherwise the default sizes are generated.
    Explicit ``splits`` (or another image or shard size) regenerate a benchmark that does not match.
    """
    root = Path(data_root or default_data_root())
    if splits is None and _manifest_matches(root, {'format_version': synthetic.FORMAT_VERSION}):
        return root
    splits = dict(splits or DEFAULT_SPLITS)
    expected = _expected_manifest(splits, image_size, shard_size)
    return _build_once(root, expected, lambda tmp: _generate(tmp, splits, image_size, shard_size, verbose))


def ensure_synthetic_variant(root: str | os.PathLike, variant: str, verbose: bool = True) -> Path:
    """Returns the directory of a variant of the benchmark in ``root``, generating it if it is missing.

    Its splits are the base benchmark's, scaled by the variant's ``fraction``, its images the base size
    times ``image_scale``; it has a manifest of its own and uses the base benchmark's tokenizer.
    """
    if variant not in synthetic.VARIANTS:
        raise KeyError(f'unknown synthetic variant {variant!r}; expected one of {sorted(synthetic.VARIANTS)}')
    spec = synthetic.VARIANTS[variant]
    base = json.loads((Path(root) / 'manifest.json').read_text())
    splits = {
        name: max(1, round(info['num_samples'] * spec.fraction)) for name, info in base['splits'].items()
    }
    image_size = base['image_size'] * spec.image_scale
    expected = _expected_manifest(splits, image_size, base['shard_size']) | {'variant': variant}
    return _build_once(
        Path(root) / 'variants' / variant,
        expected,
        lambda tmp: _generate(tmp, splits, image_size, base['shard_size'], verbose, spec),
    )


def _build_once(root: Path, expected: dict, generate) -> Path:
    """Runs ``generate(tmp_dir) -> manifest`` and publishes the result as ``root``, unless ``root``
    already holds a benchmark whose manifest matches ``expected`` (checked again under the lock)."""
    if _manifest_matches(root, expected):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + '.lock'):
        if _manifest_matches(root, expected):
            return root
        tmp = root.with_name(root.name + f'.tmp-{os.getpid()}')
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        manifest = generate(tmp) | expected
        (tmp / 'manifest.json').write_text(json.dumps(manifest, indent=2))
        _publish(tmp, root)
    return root


def _publish(tmp: Path, root: Path) -> None:
    """Moves a generated benchmark into ``root``, the manifest last (it marks the benchmark complete).

    Whatever else ``root`` holds (the encoder cache in ``encoders/``) stays; an old benchmark's files are
    replaced.
    """
    if not root.exists():
        tmp.rename(root)
        return
    (root / 'manifest.json').unlink(missing_ok=True)
    for old in root.glob('*.tar'):
        old.unlink()
    shutil.rmtree(root / 'tokenizer', ignore_errors=True)
    for item in sorted(tmp.iterdir(), key=lambda p: p.name == 'manifest.json'):
        item.rename(root / item.name)
    tmp.rmdir()


def _generate(
    root: Path,
    splits: dict[str, int],
    image_size: int,
    shard_size: int,
    verbose: bool,
    variant: synthetic.Variant | None = None,
) -> dict:
    """Writes the splits' shards (and, for the base benchmark, ``variant=None``, the tokenizer)."""
    start = time.perf_counter()
    manifest: dict = {'splits': {}}
    counts = {}
    with tqdm(
        total=sum(splits.values()), desc=f'synthetic benchmark -> {root.name}', disable=not verbose
    ) as bar:
        for split, n in splits.items():
            counts[split] = synthetic.write_split(
                root,
                split,
                n,
                image_size,
                shard_size,
                progress=bar,
                variant=variant or synthetic.DEFAULT_VARIANT,
            )
            num_shards = (n + shard_size - 1) // shard_size
            manifest['splits'][split] = {
                'num_samples': n,
                'shards': [f'{split}-{k:05d}.tar' for k in range(num_shards)],
            }
    for split, n in splits.items():
        if split != 'train':
            manifest['splits'][split]['question_only_prior'] = synthetic.question_only_prior(
                counts['train'], split, n, variant or synthetic.DEFAULT_VARIANT
            )
    if variant is None:
        train_word_level_tokenizer(synthetic.corpus_lines(counts['train'])).save_pretrained(
            str(root / 'tokenizer')
        )
    manifest['generation_seconds'] = round(time.perf_counter() - start, 1)
    return manifest


def train_word_level_tokenizer(lines: list[str]):
    """A word-level tokenizer trained on ``lines``: each answer of the benchmark is one token."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ['<pad>', '<unk>', '<s>', '</s>', IMAGE_TOKEN]
    tok = Tokenizer(models.WordLevel(unk_token='<unk>'))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(lines, trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token='<pad>',
        unk_token='<unk>',
        bos_token='<s>',
        eos_token='</s>',
        additional_special_tokens=[IMAGE_TOKEN],
    )


@FUNCTIONS.register_module()
@shared_settings('data_root')
def synthetic_tokenizer(data_root: str | None = None, **data_kwargs):
    """The word-level tokenizer saved beside the synthetic benchmark (generating both if missing)."""
    from transformers import AutoTokenizer

    root = ensure_synthetic_data(data_root, **data_kwargs)
    return AutoTokenizer.from_pretrained(str(root / 'tokenizer'))
