"""webdataset pipelines for caption, question/answer, instruction and interleaved-document shards.

Every stage has an error handler (:class:`vlkit.data.skips.SkipCounter`) that skips the bad sample or shard
and counts it by reason; ``strict=True`` re-raises instead.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from ..constants import IMAGE_TOKEN
from ..registry import DATASETS, shared_settings
from ..tokenization import build_tokenizer
from .anyres import check_anyres
from .chat import ChatTokenizer, to_messages
from .interleaved import document_segments, tokenize_document
from .prefetch import map_in_threads, read_ahead
from .skips import MissingField, SampleError, SkipCounter
from .tar_stream import tar_samples
from .templates import tokenize_conversation
from .transforms import blank_like, image_to_tensor, images_to_crops, resolve_image_processor

IMAGE_EXTENSIONS = ('png', 'jpg', 'jpeg', 'webp', 'gif', 'bmp', 'tiff')
# record fields that evaluation needs besides the answer (submission files, per-type scores)
META_FIELDS = ('id', 'question_id', 'image_id', 'image_name', 'answer_type')
ENCODED = 'encoded_images'  # a sample's images before decoding, between ConversationShards' two stages


@dataclass(frozen=True)
class EncodedImages:
    """A sample's images as their files' bytes, in order, until :meth:`ConversationShards.decode_images`."""

    data: list[bytes]
    single: bool  # decoded to one ``image`` [3, S, S]; else to ``images`` (crops) and ``crop_counts``
    shard: str | None  # where the sample came from, for the error handler


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
@shared_settings('image_size', 'tokenizer', 'image_processor')
class ConversationShards(IterableDataset):
    """Samples of ``KEY.<image>`` + ``KEY.json`` (``{"conversations": [...]}``) or ``KEY.txt`` (a caption),
    and interleaved documents (``KEY.json`` with ``texts``/``images`` + ``KEY.0.<image>``, ...; see
    :mod:`vlkit.data.interleaved`), so one stream may mix all the formats of docs/architecture.md, "Data".
    What ``tools/prepare_data.py`` writes is read too (docs/data.md): conversations with no image or
    several (``KEY.0.<image>``, ``KEY.1.<image>``, ...), questions (``question`` with ``answer`` and the
    human ``answers``) and captions (``captions``: in train mode one drawn per read, all of them as the
    references in generate mode).

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
        template: how conversations become tokens (:mod:`vlkit.data.chat`): ``'vlkit'`` (the synthetic
            benchmark's format), ``'chat'`` (the tokenizer's own chat template), ``'plain'`` or
            ``'vicuna_v1'``.
        question_prompt: the human turn of a question record, a format string of ``{question}`` (and
            ``{ocr_tokens}``, the record's OCR tokens joined by ", "), after the ``<image>`` marker.
        caption_prompt: the human turn of a caption record, after the ``<image>`` marker.
        image_processor: the encoder's preprocessing (mean, std, size, resample;
            :mod:`vlkit.data.transforms`), filled by ``load_config``; ``None``: mean and std 0.5, bicubic.
        pad_to_square: pad each image to a square in the mean colour before resizing (LLaVA's ``pad``).
        read_ahead: samples made ahead of the consumer by a background thread (:mod:`vlkit.data.prefetch`),
            so that decoding and tokenizing overlap the training step; 0: none. Only in the training
            process (``num_workers=0``): a data-loader worker already works ahead of the step, and a thread
            beside it there only competes with it for Python's lock (benchmarks/data.py measures both).
        decode_threads: threads that decode and resize the images in a data-loader worker, several samples
            at once and in the stream's order (Pillow decodes and resizes outside Python's lock); parsing,
            caption draws and tokenization stay in the worker's own thread, in order, so the samples are
            the same whatever the number. Only in a worker, whose process exists to make data; in the
            training process the cores are the model's, and ``read_ahead`` only fills its gaps. 0: none.
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
        template: str = 'vlkit',
        question_prompt: str = '{question}',
        caption_prompt: str = '',
        image_processor: dict | None = None,
        pad_to_square: bool = False,
        read_ahead: int = 256,
        decode_threads: int = 2,
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
        self.template = template
        self.chat = ChatTokenizer(self.tokenizer, template) if template != 'vlkit' else None
        self.question_prompt = question_prompt
        self.caption_prompt = caption_prompt
        self.processor = resolve_image_processor(image_processor, pad_to_square)
        self.caption_rng = random.Random(seed)
        self.read_ahead = read_ahead
        self.decode_threads = decode_threads

    def __len__(self) -> int:
        return self.num_samples

    def _stages(self) -> list:
        h = self.skipped
        if self.mode == 'train':
            source = [wds.ResampledShards(self.shards, seed=self.seed, deterministic=True)]
            # seeded like the shard resampling (seed, rank, worker), so a resumed run replays the stream
            rng = random.Random(wds.utils.make_seed(wds.utils.pytorch_worker_seed(), self.seed))
            order = [wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)]
            self.caption_rng = random.Random(
                wds.utils.make_seed(wds.utils.pytorch_worker_seed(), self.seed, 1)
            )
        else:
            source = [wds.SimpleShardList(self.shards), wds.split_by_worker]
            order = [_split_by_rank]
        return [*source, tar_samples(h), *order, wds.map(self.read, handler=h), self.decoded]

    def __iter__(self) -> Iterator[dict]:
        in_worker = get_worker_info() is not None
        return read_ahead(iter(wds.DataPipeline(*self._stages())), 0 if in_worker else self.read_ahead)

    def read(self, raw: dict) -> dict:
        """:meth:`to_sample`, tagging errors with their shard for the handler."""
        try:
            return self.to_sample(raw)
        except Exception as exn:
            exn.shard = raw.get('__url__')
            raise

    def decoded(self, samples: Iterator[dict]) -> Iterator[dict]:
        """The samples with their images decoded (:meth:`decode_images`), counting the good ones."""
        threads = self.decode_threads if get_worker_info() is not None else 0
        for sample in map_in_threads(samples, self.decode_images, threads, handler=self.skipped):
            self.skipped.count_good()
            yield sample

    def to_sample(self, raw: dict) -> dict:
        """A raw tar sample (``__key__`` plus bytes per extension) -> token ids and the images' bytes
        (:class:`EncodedImages`, for :meth:`decode_images`)."""
        key = raw.get('__key__', '?')
        record = json.loads(raw['json']) if 'json' in raw else None
        if record is not None and ('texts' in record or 'images' in record):
            return self.document_sample(raw, record)
        conversations, references, task = self.conversation(raw, record, key)
        images = [raw[m] for m in _image_members(raw)]
        markers = sum(
            str(turn.get('value', turn.get('content', ''))).count(IMAGE_TOKEN) for turn in conversations
        )
        if record is None and not images:
            raise MissingField(f'sample {key!r} has no image ({"/".join(IMAGE_EXTENSIONS)})')
        if markers != len(images):
            raise SampleError(
                f'sample {key!r} has {markers} {IMAGE_TOKEN} markers but {len(images)} images',
                reason='image_count_mismatch',
            )
        sample = self.tokenize(conversations, key)
        if references is not None and self.mode == 'generate':
            sample['answer'] = references
        sample[ENCODED] = EncodedImages(images, len(images) == 1 and self.anyres is None, raw.get('__url__'))
        sample['task'] = task
        meta = {k: record[k] for k in META_FIELDS if k in record} if record is not None else {}
        if meta:
            sample['meta'] = meta
        return sample

    def tokenize(self, conversations: list[dict], key: str) -> dict:
        """Token ids and labels (or the prompt and answer) of a conversation, by the dataset's template."""
        generate = self.mode == 'generate'
        if self.template == 'vlkit':
            try:
                return tokenize_conversation(self.tokenizer, conversations, for_generation=generate)
            except ValueError as err:
                raise SampleError(f'sample {key!r}: {err}', reason='bad_conversation') from err
        return self.chat(to_messages(conversations, key), key, for_generation=generate)

    def conversation(self, raw: dict, record: dict | None, key: str) -> tuple[list[dict], list | None, str]:
        """A sample's turns, its reference answers for evaluation (``None``: the last answer) and task."""
        if record is None:
            if 'txt' not in raw:
                raise MissingField(f'sample {key!r} has neither .json (conversations) nor .txt (caption)')
            caption = raw['txt'].decode()
            if not caption.strip():  # img2dataset writes "" for a row without a caption
                raise SampleError(f'sample {key!r} has an empty caption ({key}.txt)', reason='empty_caption')
            return _turns(IMAGE_TOKEN + self.caption_prompt, caption), None, 'caption'
        task = record.get('task')
        if 'conversations' in record:
            return record['conversations'], None, task
        if 'question' in record:
            ocr = ', '.join(record.get('ocr_tokens') or [])
            human = f'{IMAGE_TOKEN}\n' + self.question_prompt.format(
                question=record['question'], ocr_tokens=ocr
            )
            references = record.get('answers') or None
            answer = record.get('answer') or (references[0] if references else '')
            return _turns(human, answer), references, task
        if 'captions' in record:
            captions = record['captions']  # none for a test split's image: captioned, not scored
            caption = self.caption_rng.choice(captions) if captions else ''
            return (
                _turns(IMAGE_TOKEN + self.caption_prompt, caption),
                list(captions) or None,
                task or 'caption',
            )
        raise MissingField(f'sample {key!r}: {key}.json has none of "conversations", "question", "captions"')

    def document_sample(self, raw: dict, record: dict) -> dict:
        """An interleaved document (:mod:`vlkit.data.interleaved`) -> token ids, its images' crops and
        ``crop_counts``; in generate mode only the images before the answer."""
        key = raw.get('__key__', '?')
        if not {'texts', 'images'} <= set(record):
            raise MissingField(f'document {key!r}: {key}.json needs both "texts" and "images"')
        segments, targets = document_segments(record, key)
        sample = tokenize_document(self.tokenizer, segments, targets, for_generation=self.mode == 'generate')
        images = [raw[_document_image(raw, key, i)] for i in range(sample.pop('num_images'))]
        sample[ENCODED] = EncodedImages(images, single=False, shard=raw.get('__url__'))
        sample['task'] = record.get('task')
        return sample

    def decode_images(self, sample: dict) -> dict:
        """Decodes a sample's images (its :class:`EncodedImages`): one ``image`` [3, S, S], or ``images``
        [crops, 3, S, S] and ``crop_counts`` (:meth:`decoded` counts it as read). Touches nothing but the
        sample, so that threads can run it (``decode_threads``)."""
        encoded = sample.pop(ENCODED)
        try:
            images = [_decode_image(data) for data in encoded.data]
            if encoded.single:
                image = image_to_tensor(images[0], self.image_size, self.processor)
                sample['image'] = blank_like(image) if self.blank_images else image
            else:
                sample.update(self.image_fields(images))
        except Exception as exn:
            exn.shard = encoded.shard
            raise
        return sample

    def image_fields(self, images: list[Image.Image]) -> dict:
        """A sample's ``images`` [crops, 3, S, S] and ``crop_counts`` (crops per image, in order)."""
        crops, counts = images_to_crops(images, self.image_size, self.anyres, self.processor)
        return {'images': blank_like(crops) if self.blank_images else crops, 'crop_counts': counts}


def _turns(human: str, answer: str) -> list[dict]:
    return [{'from': 'human', 'value': human}, {'from': 'gpt', 'value': answer}]


def _image_members(raw: dict) -> list[str]:
    """A sample's image members in order: ``KEY.<ext>`` alone, or ``KEY.0.<ext>``, ``KEY.1.<ext>``, ..."""
    single = next((e for e in IMAGE_EXTENSIONS if e in raw), None)
    if single is not None:
        return [single]
    members = []
    while found := next(
        (f'{len(members)}.{e}' for e in IMAGE_EXTENSIONS if f'{len(members)}.{e}' in raw), None
    ):
        members.append(found)
    return members


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


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """The ``manifest.json`` of a directory that ``tools/prepare_data.py`` wrote."""
    path = Path(data_dir) / 'manifest.json'
    if not path.is_file():
        raise FileNotFoundError(
            f'{data_dir} has no manifest.json: prepare it with tools/prepare_data.py FORMAT SOURCE '
            f'--out {data_dir} '
            '(a conversion that has not finished writes its manifest last)'
        )
    return json.loads(path.read_text())


@DATASETS.register_module()
class PreparedShards(ConversationShards):
    """A split of a directory that ``tools/prepare_data.py`` wrote: its manifest names the split's shards
    and sample count (docs/data.md). Takes :class:`ConversationShards`' arguments besides these.

    Args:
        data_dir: the directory (``--out`` of the conversion).
        split: the split to read; ``None`` when the directory holds one split only.
    """

    def __init__(self, data_dir: str, split: str | None = None, **kwargs) -> None:
        self.manifest = read_manifest(data_dir)
        splits = self.manifest['splits']
        if split is None and len(splits) == 1:
            split = next(iter(splits))
        if split not in splits:
            raise KeyError(f'split {split!r} is not in {data_dir}/manifest.json; available: {sorted(splits)}')
        self.split = split
        kwargs.setdefault('num_samples', splits[split]['num_samples'])
        super().__init__([str(Path(data_dir) / name) for name in splits[split]['shards']], **kwargs)


@DATASETS.register_module()
class Img2DatasetShards(ConversationShards):
    """img2dataset's webdataset output read as it is, with no conversion: ``KEY.jpg`` + ``KEY.txt`` (the
    caption) + ``KEY.json`` (img2dataset's metadata: url, status, size; not read). Takes
    :class:`ConversationShards`' arguments.

    Args:
        shards: a folder (every ``*.tar`` in it, in name order, and the number of samples from
            img2dataset's ``*_stats.json`` files, ``successes``), shard paths or a brace pattern.
    """

    def __init__(self, shards: str | list[str], **kwargs) -> None:
        if isinstance(shards, str) and os.path.isdir(shards):
            folder = Path(shards)
            shards = [str(p) for p in sorted(folder.glob('*.tar'))]
            if not shards:
                raise FileNotFoundError(
                    f'{folder} holds no .tar shards (img2dataset --output_format webdataset)'
                )
        successes = _img2dataset_successes(shards)
        if successes is not None:
            kwargs.setdefault('num_samples', successes)
        super().__init__(shards, **kwargs)

    def to_sample(self, raw: dict) -> dict:
        return super().to_sample({k: v for k, v in raw.items() if k != 'json'})


def _img2dataset_successes(shards: str | list[str]) -> int | None:
    """The samples in img2dataset shards: the ``successes`` of the ``NAME_stats.json`` beside each local
    ``NAME.tar`` (``None`` where there is none)."""
    urls = wds.shardlists.expand_urls(shards) if isinstance(shards, str) else list(shards)
    stats = [Path(url[: -len('.tar')] + '_stats.json') for url in urls if url.endswith('.tar')]
    stats = [path for path in stats if path.is_file()]
    return sum(json.loads(path.read_text()).get('successes', 0) for path in stats) if stats else None
