"""webdataset pipelines for caption, question/answer, instruction and interleaved-document shards.

Every stage has an error handler (:class:`vlkit.data.skips.SkipCounter`) that skips the bad sample or shard
and counts it by reason; ``strict=True`` re-raises instead.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator

import webdataset as wds
from PIL import Image
from torch.utils.data import IterableDataset

from ..constants import IMAGE_TOKEN
from ..registry import DATASETS, shared_settings
from ..tokenization import build_tokenizer
from .anyres import check_anyres
from .interleaved import document_segments, tokenize_document
from .skips import MissingField, SkipCounter
from .templates import tokenize_conversation
from .transforms import blank_like, image_to_tensor, images_to_crops

IMAGE_EXTENSIONS = ('png', 'jpg', 'jpeg', 'webp')


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
@shared_settings('image_size', 'tokenizer')
class ConversationShards(IterableDataset):
    """Samples of ``KEY.<image>`` + ``KEY.json`` (``{"conversations": [...]}``) or ``KEY.txt`` (a caption),
    and interleaved documents (``KEY.json`` with ``texts``/``images`` + ``KEY.0.<image>``, ...; see
    :mod:`vlkit.data.interleaved`), so one stream may mix all the formats of docs/architecture.md, "Data".

    Args:
        shards: shard paths or a brace pattern (``data/train-{00000..00019}.tar``).
        tokenizer: a tokenizer spec (:func:`vlkit.tokenization.build_tokenizer`), the LLM's.
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
                {'from': 'human', 'value': IMAGE_TOKEN},
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
@shared_settings('data_root', 'image_size', 'tokenizer')
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
