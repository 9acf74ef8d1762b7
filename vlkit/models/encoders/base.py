"""The vision-encoder contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

from torch import Tensor, nn


class VisualFeatures(NamedTuple):
    """Patch tokens of a batch of images and the (h, w) grid they were laid out on."""

    tokens: Tensor  # [N, L, Dv], L = h * w
    grid: tuple[int, int]


class VisionEncoder(nn.Module, ABC):
    """images [N, 3, H, W] -> VisualFeatures(tokens [N, h * w, out_dim], grid (h, w)), without CLS tokens."""

    @property
    @abstractmethod
    def out_dim(self) -> int:
        """Width of each output token."""

    @abstractmethod
    def grid_size(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        """The (h, w) token grid for an image of this size."""

    def num_tokens(self, image_size: int | tuple[int, int]) -> int:
        h, w = self.grid_size(image_size)
        return h * w

    @abstractmethod
    def forward(self, images: Tensor) -> VisualFeatures: ...


def as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)
