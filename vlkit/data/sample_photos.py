"""Real photos for a quick check on real data: scikit-image's sample photos, each with the first line of
its description (``skimage.data.coffee.__doc__``: "Coffee cup.") as a one-line caption.

:func:`ensure_sample_photo_shards` writes them once as a caption shard (``KEY.png`` + ``KEY.txt``) under
``{data_root}``; :class:`SamplePhotoCaptions` reads it like any caption shard. The photos ship inside
scikit-image (the ``real`` extra), so nothing is downloaded.
"""

from __future__ import annotations

import inspect
import io
import os
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..registry import DATASETS, shared_settings
from .shards import ConversationShards

# The photographs among skimage.data's bundled images (drawings, masks and 3-D stacks left out).
PHOTOS = (
    'astronaut', 'brick', 'camera', 'chelsea', 'cell', 'clock', 'coffee', 'coins', 'grass', 'gravel',
    'hubble_deep_field', 'immunohistochemistry', 'microaneurysms', 'moon', 'page', 'retina', 'rocket', 'text',
)  # fmt: skip
MAX_SIDE = 512  # photos are stored at most this large (the largest is 1411 px)
SHARD = 'sample_photos-00000.tar'


def sample_photo(name: str) -> tuple[Image.Image, str]:
    """An RGB photo of ``skimage.data`` and its caption (the first line of its description)."""
    from skimage import data

    loader = getattr(data, name)
    pixels = np.asarray(loader())
    image = Image.fromarray(pixels).convert('RGB')
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.BICUBIC)
    return image, inspect.getdoc(loader).splitlines()[0].strip()


def ensure_sample_photo_shards(data_root: str | os.PathLike) -> str:
    """The shard of :data:`PHOTOS` with their captions under ``data_root``, written on first use."""
    path = Path(data_root) / SHARD
    if path.is_file():
        return str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    with tarfile.open(tmp, 'w') as tar:
        for name in PHOTOS:
            image, caption = sample_photo(name)
            png = io.BytesIO()
            image.save(png, format='PNG')
            for member, payload in ((f'{name}.png', png.getvalue()), (f'{name}.txt', caption.encode())):
                info = tarfile.TarInfo(member)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    os.replace(tmp, path)  # whole or not at all, also with several processes writing it at once
    return str(path)


@DATASETS.register_module()
@shared_settings('data_root', 'image_size', 'tokenizer', 'image_processor')
class SamplePhotoCaptions(ConversationShards):
    """scikit-image's sample photos with one-line captions (module docstring), as caption samples.

    Args:
        data_root: where the shard is written on first use.
        **kwargs: :class:`ConversationShards`' arguments (``tokenizer``, ``image_size``, ``mode``, ...).
    """

    def __init__(self, data_root: str | None = None, **kwargs) -> None:
        if data_root is None:
            raise ValueError('SamplePhotoCaptions needs data_root (the folder its shard is written to)')
        kwargs.setdefault('num_samples', len(PHOTOS))
        kwargs.setdefault('shuffle_buffer', len(PHOTOS))
        super().__init__(ensure_sample_photo_shards(data_root), **kwargs)
