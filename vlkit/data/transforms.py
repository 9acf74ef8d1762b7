"""Image to tensor conversion shared by the data pipelines and the encoder pretraining."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .anyres import select_grid, split_image

MEAN, STD = 0.5, 0.5


def normalize_uint8(images: Tensor) -> Tensor:
    """uint8 [..., 3, H, W] in 0..255 -> float in [-1, 1]."""
    return (images.float() / 255.0 - MEAN) / STD


def image_to_tensor(image: Image.Image, size: int | tuple[int, int]) -> Tensor:
    """A PIL image -> normalized float tensor [3, H, W], resized (bicubic) to ``size`` if needed."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    image = image.convert('RGB')
    if image.size != (hw[1], hw[0]):
        image = image.resize((hw[1], hw[0]), Image.BICUBIC)
    return normalize_uint8(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))


def blank_like(images: Tensor) -> Tensor:
    """A constant mid-grey image batch of the same shape (for measuring what a model takes from images)."""
    return torch.zeros_like(images)


def images_to_crops(
    images: list[Image.Image], image_size: int, anyres: dict | None = None
) -> tuple[Tensor, list[int]]:
    """PIL images -> crops [C, 3, S, S] (``S = image_size``) and the number of crops of each image.

    Without ``anyres`` each image is one crop, resized to ``S``; with it (checked settings, see
    :mod:`vlkit.data.anyres`) each image is a global view plus a grid of base-resolution crops.
    """
    crops, counts = [], []
    for image in images:
        parts = [image]
        if anyres is not None:
            grid = select_grid((image.height, image.width), anyres['grids'], image_size)
            parts = split_image(image, grid, image_size, anyres['global_view'])
        crops += [image_to_tensor(part, image_size) for part in parts]
        counts.append(len(parts))
    if not crops:
        return torch.zeros(0, 3, image_size, image_size), counts
    return torch.stack(crops), counts
