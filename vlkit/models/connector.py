"""The connector contract: visual tokens of the encoder in, visual tokens for the fusion out."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import ClassVar

from torch import Tensor, nn


class Connector(nn.Module, ABC):
    """Base class of every connector.

    Subclasses take keyword-only ``in_dim`` and ``out_dim`` (filled in by the model builder; ``out_dim=None``
    keeps ``in_dim``), optionally ``input_grid=(h, w)`` (the encoder's token grid, passed only to
    connectors whose constructor declares it), and their own hyper-parameters. ``forward`` keeps no state
    between calls and must ignore masked tokens.

    Attributes:
        token_knob: the name of the constructor argument that sets how many visual tokens the connector
            makes (``'num_latents'``, ...), or ``None`` when no single argument does (a projector keeps the
            encoder's tokens). ``tools/compare.py --tokens`` sets it.
    """

    token_knob: ClassVar[str | None] = None

    def __init__(self, *, in_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = in_dim if out_dim is None else out_dim

    @abstractmethod
    def num_output_tokens(self, num_input_tokens: int) -> int:
        """How many visual tokens ``forward`` returns for ``num_input_tokens`` input tokens."""

    @abstractmethod
    def forward(self, x: Tensor, mask: Tensor | None = None, grid: tuple[int, int] | None = None) -> Tensor:
        """x [B, N, in_dim], mask [B, N] (True = real token) -> [B, M, out_dim]."""

    @classmethod
    def wants_input_grid(cls) -> bool:
        return 'input_grid' in inspect.signature(cls.__init__).parameters
