"""The vision-encoder contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar, NamedTuple

from torch import Tensor, nn


class VisualFeatures(NamedTuple):
    """Patch tokens of a batch of images and the (h, w) grid they were laid out on."""

    tokens: Tensor  # [N, L, Dv], L = h * w
    grid: tuple[int, int]


class VisionEncoder(nn.Module, ABC):
    """images [N, 3, H, W] -> VisualFeatures(tokens [N, h * w, out_dim], grid (h, w)), without CLS tokens.

    Besides the built encoder's :attr:`out_dim` and :meth:`grid_size`, each class says what a config of it
    declares before anything is built (:meth:`declared_width`, :meth:`declared_input_size`), so that a
    config can be checked against the rest of the model in seconds.

    Attributes:
        file_arguments: constructor arguments that name local files (checked to exist before a run).
    """

    file_arguments: ClassVar[tuple[str, ...]] = ()

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

    @classmethod
    def declared_width(cls, cfg: Mapping) -> int | None:
        """The token width that a config of this class declares (``None``: known only once built)."""
        return None

    @classmethod
    def declared_input_size(cls, cfg: Mapping) -> int | tuple[int, int] | None:
        """The input resolution that a config of this class fixes (``None``: not fixed by the config)."""
        return None

    @classmethod
    def declared_preprocessing(cls, cfg: Mapping) -> dict | None:
        """The image preprocessing that a config of this class expects: ``mean`` and ``std`` (3-tuples on
        0..1 pixel values), ``size`` and ``resample`` (a PIL filter name); ``load_config`` hands it to the
        datasets as their ``image_processor``. ``None``: vlkit's default (mean and std 0.5, bicubic)."""
        return None

    @classmethod
    def without_weights(cls, cfg: Mapping) -> dict:
        """``cfg`` changed to build the same architecture without loading any weights (for profiling on the
        meta device); raises ``ValueError`` when the architecture is known only from the weights' files."""
        return dict(cfg)


def as_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)
