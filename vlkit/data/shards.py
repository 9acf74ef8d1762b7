"""webdataset pipelines for caption, question/answer, instruction and interleaved-document shards.

Every stage has an error handler that skips the bad sample or shard and counts it by reason
(``corrupt_image``, ``truncated_tar``, ``missing_shard``, ``missing_field``, ``other``); ``strict=True``
re-raises instead.
"""

from __future__ import annotations

import io
import json
import random
import re
import tarfile
from collections import Counter
from collections.abc import Iterator

import torch
import webdataset as wds
from mmengine.logging import print_log
from PIL import Image, UnidentifiedImageError
from torch.utils.data import IterableDataset

from ..models.llms.tokenizer import build_tokenizer
from ..registry import DATASETS, FUNCTIONS
from .anyres import check_anyres
from .interleaved import document_segments, tokenize_document
from .templates import tokenize_conversation
from .transforms import blank_like, image_to_tensor, images_to_crops

IMAGE_EXTENSIONS = ('png', 'jpg', 'jpeg', 'webp')


class MissingField(KeyError):
    """A sample lacks a field its format needs."""


def skip_reason(exn: BaseException) -> str:
    if isinstance(exn, MissingField):
        return 'missing_field'
    if isinstance(exn, FileNotFoundError):
        return 'missing_shard'
    if isinstance(exn, tarfile.ReadError | tarfile.HeaderError) or 'tar' in type(exn).__module__:
        return 'truncated_tar'
    if isinstance(exn, UnidentifiedImageError | SyntaxError) or (
        isinstance(exn, OSError) and 'image' in str(exn)
    ):
        return 'corrupt_image'
    return 'other'


class BadSampleError(RuntimeError):
    """A bad sample or shard met in strict mode, with the reason and the shard it came from."""


_FILE_REPR = re.compile(r"name='([^']+)'")


def shard_of(exn: BaseException) -> str | None:
    """The shard a webdataset error came from.

    Sample errors carry it as ``exn.shard`` (set by :meth:`ConversationShards.read`); webdataset appends the
    url to the arguments of errors from opening a shard, and the open file (or, reading its members, the
    file's repr in the message) to errors from reading one.
    """
    shard = getattr(exn, 'shard', None)
    if shard is not None:
        return shard
    for arg in reversed(exn.args):
        name = getattr(arg, 'name', None)
        if isinstance(arg, str) and ' ' not in arg:
            return arg
        if isinstance(name, str):
            return name
        found = _FILE_REPR.search(arg) if isinstance(arg, str) else None
        if found:
            return found.group(1)
    return None


class SkipCounter:
    """A webdataset error handler that counts skipped samples by reason and by shard (or raises when strict).

    ``good`` counts the samples read successfully (see :meth:`ConversationShards.read`), so that
    ``skip_rate`` is the share of bad ones among all met.
    """

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.counts: Counter[str] = Counter()
        self.shards: Counter[str] = Counter()
        self.good = 0

    def __call__(self, exn: BaseException) -> bool:
        if isinstance(exn, BadSampleError):  # raised by an inner stage, passing through an outer one
            raise exn
        reason, shard = skip_reason(exn), shard_of(exn) or '?'
        if self.strict:
            raise BadSampleError(f'{reason} in shard {shard}: {type(exn).__name__}: {exn}') from exn
        self.counts[reason] += 1
        self.shards[shard] += 1
        if self.counts[reason] <= 3:
            print_log(
                f'skipping a bad sample ({reason}) from {shard}: {type(exn).__name__}: {exn}',
                logger='current',
                level=30,
            )
        return True

    @property
    def skip_rate(self) -> float:
        bad = sum(self.counts.values())
        return bad / (bad + self.good) if bad else 0.0

    def summary(self) -> dict:
        """Counts by reason and by shard, samples read and the skip rate, for logs and ``data_skips.json``."""
        return {
            'samples_read': self.good,
            'skipped': dict(self.counts),
            'skip_rate': self.skip_rate,
            'shards': dict(self.shards.most_common()),
        }


def _decode_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _split_by_rank(samples: Iterator[dict]) -> Iterator[dict]:
    """Every ``world_size``-th sample from the ``rank``-th on: each sample is evaluated once under DDP,
    however few shards there are, and MMEngine's result collection, which interleaves the ranks' results,
    puts them back in order."""
    rank, world_size, _, _ = wds.utils.pytorch_worker_info()
    for i, sample in enumerate(samples):
        if i % world_size == rank:
            yield sample


@DATASETS.register_module()
class ConversationShards(IterableDataset):
    """Samples of ``KEY.<image>`` + ``KEY.json`` (``{"conversations": [...]}``) or ``KEY.txt`` (a caption),
    and interleaved documents (``KEY.json`` with ``texts``/``images`` + ``KEY.0.<image>``, ...; see
    :mod:`vlkit.data.interleaved`), so one stream may mix all the formats of DESIGN §5.

    Args:
        shards: shard paths or a brace pattern (``data/train-{00000..00019}.tar``).
        tokenizer: a tokenizer spec (:func:`vlkit.models.llms.tokenizer.build_tokenizer`), the LLM's.
        image_size: square input resolution.
        num_samples: the stream's nominal length (what ``len()`` reports).
        mode: ``'train'`` (ids + labels, endless resampled shards, shuffled; each rank draws its own
            stream, so every rank has as many batches as the loop asks for) or ``'generate'`` (prompt ids +
            answer, each sample once in order, split by rank under DDP).
        shuffle_buffer: samples held for shuffling in train mode.
        seed: seed of the shard resampling and shuffling.
        strict: raise on the first bad sample instead of skipping it.
        blank_images: replace every image by a constant grey one (what does a model take from images?).
        anyres: patch-wise any-resolution settings, ``dict(grids=[(rows, cols), ...], global_view=True)``
            (:mod:`vlkit.data.anyres`): each image becomes a global view plus a grid of ``image_size``
            crops, and samples carry ``images`` [crops, 3, S, S] and ``crop_counts``. ``None``: each image
            is resized to ``image_size``.
    """

    def __init__(
        self,
        shards: str | list[str],
        tokenizer: str | dict,
        image_size: int = 64,
        num_samples: int = 1000,
        mode: str = 'train',
        shuffle_buffer: int = 1000,
        seed: int = 0,
        strict: bool = False,
        blank_images: bool = False,
        anyres: dict | None = None,
    ) -> None:
        super().__init__()
        if mode not in ('train', 'generate'):
            raise ValueError(f"dataset mode must be 'train' or 'generate', got {mode!r}")
        self.shards = shards
        self.tokenizer = build_tokenizer(tokenizer)
        self.image_size = image_size
        self.num_samples = num_samples
        self.mode = mode
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.skipped = SkipCounter(strict)
        self.blank_images = blank_images
        self.anyres = check_anyres(anyres) if anyres is not None else None

    def __len__(self) -> int:
        return self.num_samples

    def _stages(self) -> list:
        h = self.skipped
        if self.mode == 'train':
            source = [wds.ResampledShards(self.shards, seed=self.seed, deterministic=True)]
            # seeded like the shard resampling (seed, rank, worker), so a resumed run replays the stream
            rng = random.Random(wds.utils.make_seed(wds.utils.pytorch_worker_seed(), self.seed))
            order = [wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)]
        else:
            source = [wds.SimpleShardList(self.shards), wds.split_by_worker]
            order = [_split_by_rank]
        return [*source, wds.tarfile_to_samples(handler=h), *order, wds.map(self.read, handler=h)]

    def __iter__(self) -> Iterator[dict]:
        return iter(wds.DataPipeline(*self._stages()))

    def read(self, raw: dict) -> dict:
        """:meth:`to_sample`, counting good samples and tagging errors with their shard for the handler."""
        try:
            sample = self.to_sample(raw)
        except Exception as exn:
            exn.shard = raw.get('__url__')
            raise
        self.skipped.good += 1
        return sample

    def to_sample(self, raw: dict) -> dict:
        """A raw tar sample (``__key__`` plus bytes per extension) -> tensors and token ids."""
        key = raw.get('__key__', '?')
        record = json.loads(raw['json']) if 'json' in raw else None
        if record is not None and ('texts' in record or 'images' in record):
            return self.document_sample(raw, record)
        image_ext = next((e for e in IMAGE_EXTENSIONS if e in raw), None)
        if image_ext is None:
            raise MissingField(f'sample {key!r} has no image ({"/".join(IMAGE_EXTENSIONS)})')
        if record is not None:
            if 'conversations' not in record:
                raise MissingField(f'sample {key!r}: {key}.json has no "conversations"')
            conversations, task = record['conversations'], record.get('task')
        elif 'txt' in raw:
            conversations = [
                {'from': 'human', 'value': '<image>'},
                {'from': 'gpt', 'value': raw['txt'].decode()},
            ]
            task = 'caption'
        else:
            raise MissingField(f'sample {key!r} has neither .json (conversations) nor .txt (caption)')
        sample = tokenize_conversation(self.tokenizer, conversations, for_generation=self.mode == 'generate')
        if self.anyres is not None:
            sample.update(self.image_fields([_decode_image(raw[image_ext])]))
        else:
            image = image_to_tensor(_decode_image(raw[image_ext]), self.image_size)
            sample['image'] = blank_like(image) if self.blank_images else image
        sample['task'] = task
        return sample

    def document_sample(self, raw: dict, record: dict) -> dict:
        """An interleaved document (:mod:`vlkit.data.interleaved`) -> token ids, its images' crops and
        ``crop_counts``; in generate mode only the images before the answer."""
        key = raw.get('__key__', '?')
        if not {'texts', 'images'} <= set(record):
            raise MissingField(f'document {key!r}: {key}.json needs both "texts" and "images"')
        segments, targets = document_segments(record, key)
        sample = tokenize_document(self.tokenizer, segments, targets, for_generation=self.mode == 'generate')
        images = [_decode_image(raw[_document_image(raw, key, i)]) for i in range(sample.pop('num_images'))]
        sample.update(self.image_fields(images))
        sample['task'] = record.get('task')
        return sample

    def image_fields(self, images: list[Image.Image]) -> dict:
        """A sample's ``images`` [crops, 3, S, S] and ``crop_counts`` (crops per image, in order)."""
        crops, counts = images_to_crops(images, self.image_size, self.anyres)
        return {'images': blank_like(crops) if self.blank_images else crops, 'crop_counts': counts}


def _document_image(raw: dict, key: str, index: int) -> str:
    """The member (extension) holding a document's ``index``-th image: ``KEY.{index}.png`` or another type."""
    for ext in IMAGE_EXTENSIONS:
        if f'{index}.{ext}' in raw:
            return f'{index}.{ext}'
    raise MissingField(f'document {key!r} has no image {key}.{index}.<{"|".join(IMAGE_EXTENSIONS)}>')


@DATASETS.register_module()
class InterleavedShards(ConversationShards):
    """Interleaved image-text documents only (OBELICS / MINT-1T style, :mod:`vlkit.data.interleaved`).

    Takes :class:`ConversationShards`' arguments; any other kind of sample is skipped and counted as
    ``missing_field``. Samples hold any number of images (none included), text before, between and after
    them, and ``crop_counts``.
    """

    def to_sample(self, raw: dict) -> dict:
        key = raw.get('__key__', '?')
        if 'json' not in raw:
            raise MissingField(f'sample {key!r} has no {key}.json; an interleaved document needs one')
        return self.document_sample(raw, json.loads(raw['json']))


@DATASETS.register_module()
class SyntheticShards(ConversationShards):
    """A split of the synthetic benchmark, generated on first use (see :mod:`vlkit.data.prepare`).

    ``variant`` names a variant of it (``'interleaved'`` few-shot documents, ``'hires'`` images at twice
    the size with small print; :data:`vlkit.data.synthetic.VARIANTS`), generated on first use beside it.
    """

    def __init__(
        self,
        split: str,
        data_root: str | None = None,
        data_kwargs: dict | None = None,
        variant: str | None = None,
        **kwargs,
    ) -> None:
        from .prepare import ensure_synthetic_data, ensure_synthetic_variant
        from .synthetic import shard_urls

        root = ensure_synthetic_data(data_root, **(data_kwargs or {}))
        if variant is not None:
            root = ensure_synthetic_variant(root, variant, verbose=(data_kwargs or {}).get('verbose', True))
        manifest = json.loads((root / 'manifest.json').read_text())
        if split not in manifest['splits']:
            raise KeyError(
                f'split {split!r} is not in {root}/manifest.json; available: {sorted(manifest["splits"])}'
            )
        kwargs.setdefault('num_samples', manifest['splits'][split]['num_samples'])
        super().__init__(shard_urls(root, split), **kwargs)
        self.question_only_prior = manifest['splits'][split].get('question_only_prior')


def _pad(seqs: list[list[int]], value: int, left: bool) -> torch.Tensor:
    width = max(map(len, seqs))
    rows = [[value] * (width - len(s)) + s if left else s + [value] * (width - len(s)) for s in seqs]
    return torch.tensor(rows, dtype=torch.long)


def sample_crops(sample: dict) -> tuple[torch.Tensor, list[int]]:
    """A sample's image crops [C, 3, H, W] and crops per image: one ``image``, or ``images`` with
    ``crop_counts`` (several images, any-resolution crops; one crop per image when absent)."""
    if 'image' in sample:
        return sample['image'][None], [1]
    if 'images' in sample:
        images = sample['images']
        return images, list(sample.get('crop_counts', [1] * len(images)))
    raise KeyError(f"a sample needs 'image' or 'images'; it has {sorted(sample)}")


@FUNCTIONS.register_module()
def vlm_collate(samples: list[dict]) -> dict:
    """Pads a list of samples into a batch (DESIGN §3): right padding for training, left for generation.

    ``images`` holds every sample's images (their crops, with any-resolution encoding) in order, and
    ``image_counts`` the number of images per sample; ``crop_counts`` (crops per image) is added when an
    image has more than one crop. Keys beginning with ``__`` are dropped.
    """
    generating = 'labels' not in samples[0]
    ids = [s['input_ids'] for s in samples]
    crops, crop_counts = zip(*map(sample_crops, samples), strict=True)
    batch = {
        'images': torch.cat(crops),
        'image_counts': torch.tensor([len(c) for c in crop_counts], dtype=torch.long),
        'input_ids': _pad(ids, 0, left=generating),
        'attention_mask': _pad([[1] * len(i) for i in ids], 0, left=generating),
    }
    flat_counts = [n for counts in crop_counts for n in counts]
    if any(n != 1 for n in flat_counts):
        batch['crop_counts'] = torch.tensor(flat_counts, dtype=torch.long)
    if generating:
        batch['answers'] = [s['answer'] for s in samples]
    else:
        batch['labels'] = _pad([s['labels'] for s in samples], -100, left=False)
    batch['tasks'] = [s.get('task') for s in samples]
    return batch
