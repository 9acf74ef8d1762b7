"""Image to tensor conversion shared by the data pipelines and the encoder pretraining.

An image processor is the preprocessing an encoder declares
(:meth:`vlkit.models.encoders.VisionEncoder.declared_preprocessing`; ``load_config`` hands it to the datasets
as their ``image_processor``): ``mean`` and ``std`` (3-tuples, on 0..1 pixel values), ``size`` (the
encoder's input side), ``resample`` (a PIL filter name) and, for an encoder that resizes the shortest edge
and then crops the centre (CLIP's ``CLIPImageProcessor``), ``shortest_edge``; without it an image is resized
to ``size`` whole. ``None`` is vlkit's default: mean 0.5, std 0.5, bicubic. ``pad_to_square`` (LLaVA's
``image_aspect_ratio='pad'``) pads an image to a square in the mean colour before it is resized.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .anyres import select_grid, split_image

MEAN, STD = 0.5, 0.5
RESAMPLE = {
    'nearest': Image.NEAREST, 'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC,
    'lanczos': Image.LANCZOS, 'box': Image.BOX, 'hamming': Image.HAMMING,
}  # fmt: skip


def normalize_uint8(images: Tensor) -> Tensor:
    """uint8 [..., 3, H, W] in 0..255 -> float in [-1, 1]."""
    return (images.float() / 255.0 - MEAN) / STD


def resolve_image_processor(image_processor: dict | None, pad_to_square: bool = False) -> dict | None:
    """A dataset's preprocessing, checked and complete; ``None`` for vlkit's default without padding (the
    path that keeps the synthetic benchmark's tensors as they always were)."""
    if image_processor is None and not pad_to_square:
        return None
    processor = dict(image_processor or {})
    unknown = set(processor) - {'mean', 'std', 'size', 'resample', 'shortest_edge'}
    if unknown:
        raise ValueError(
            'image_processor takes mean, std, size, resample and shortest_edge; got unknown keys '
            f'{sorted(unknown)}'
        )
    mean, std = tuple(processor.get('mean', (MEAN,) * 3)), tuple(processor.get('std', (STD,) * 3))
    resample = processor.get('resample', 'bicubic')
    if len(mean) != 3 or len(std) != 3 or resample not in RESAMPLE:
        raise ValueError(
            f'image_processor needs 3-tuples mean and std and resample in {sorted(RESAMPLE)}; got {processor}'
        )
    return {
        'mean': mean,
        'std': std,
        'size': processor.get('size'),
        'resample': resample,
        'shortest_edge': processor.get('shortest_edge'),
        'pad': pad_to_square,
    }


def expand_to_square(image: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """``image`` centred on a square canvas of ``colour`` (LLaVA's ``expand2square``)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), colour)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def image_to_tensor(image: Image.Image, size: int | tuple[int, int], processor: dict | None = None) -> Tensor:
    """A PIL image -> normalized float tensor [3, H, W], resized to ``size`` if needed (bicubic, mean and std
    0.5 without a ``processor``, a :func:`resolve_image_processor` result)."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    image = image.convert('RGB')
    if processor is None:
        if image.size != (hw[1], hw[0]):
            image = image.resize((hw[1], hw[0]), Image.BICUBIC)
        return normalize_uint8(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
    if processor['pad']:
        image = expand_to_square(image, tuple(int(m * 255) for m in processor['mean']))
    resample = RESAMPLE[processor['resample']]
    edge = shortest_edge_for(processor, hw)
    if edge:
        image = resize_shortest_edge_and_crop(image, edge, hw, resample)
    elif image.size != (hw[1], hw[0]):
        image = image.resize((hw[1], hw[0]), resample)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(processor['mean']).view(3, 1, 1)
    return (pixels - mean) / torch.tensor(processor['std']).view(3, 1, 1)


def shortest_edge_for(processor: dict | None, size: int | tuple[int, int]) -> int | None:
    """The shortest edge to resize to before cropping ``size`` (``None``: resize whole): the declared one,
    kept in proportion where the model's input is not the declared size."""
    if not processor or not processor.get('shortest_edge'):
        return None
    hw = (size, size) if isinstance(size, int) else tuple(size)
    declared = processor['size'] if isinstance(processor.get('size'), int) else min(hw)
    return round(processor['shortest_edge'] * min(hw) / declared)


def resize_shortest_edge_and_crop(image: Image.Image, shortest_edge: int, hw: tuple[int, int], resample):
    """``CLIPImageProcessor``'s resize and centre crop: the shortest edge to ``shortest_edge``, the other
    ``int(shortest_edge * long / short)``, then the centre ``hw`` (height, width), its corner at half the
    difference rounded down."""
    width, height = image.size
    long = int(shortest_edge * max(width, height) / min(width, height))
    size = (shortest_edge, long) if width <= height else (long, shortest_edge)
    image = image.resize(size, resample)
    top, left = (size[1] - hw[0]) // 2, (size[0] - hw[1]) // 2
    return image.crop((left, top, left + hw[1], top + hw[0]))


def blank_like(images: Tensor) -> Tensor:
    """A constant mid-grey image batch of the same shape (for measuring what a model takes from images)."""
    return torch.zeros_like(images)


def images_to_crops(
    images: list[Image.Image], image_size: int, anyres: dict | None = None, processor: dict | None = None
) -> tuple[Tensor, list[int]]:
    """PIL images -> crops [C, 3, S, S] (``S = image_size``) and the number of crops of each image.

    Without ``anyres`` each image is one crop, resized to ``S``; with it (checked settings, see
    :mod:`vlkit.data.anyres`) each image is a global view plus a grid of base-resolution crops. Each crop is
    normalised by ``processor`` (:func:`image_to_tensor`).
    """
    crops, counts = [], []
    for image in images:
        parts = [image]
        if anyres is not None:
            grid = select_grid((image.height, image.width), anyres['grids'], image_size)
            parts = split_image(image, grid, image_size, anyres['global_view'])
        crops += [image_to_tensor(part, image_size, processor) for part in parts]
        counts.append(len(parts))
    if not crops:
        return torch.zeros(0, 3, image_size, image_size), counts
    return torch.stack(crops), counts
