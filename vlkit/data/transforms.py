"""Image to tensor conversion shared by the data pipelines and the encoder pretraining."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

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
