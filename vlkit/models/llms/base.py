"""The language-model contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from torch import Tensor, nn


class LanguageModel(nn.Module, ABC):
    """A causal language model with its tokenizer and the ``<image>`` token.

    Attributes:
        model: the Hugging Face causal LM (``forward`` and ``generate``), which the fusion calls.
        tokenizer: its tokenizer, with ``<image>`` and a padding token.
        image_token_id: the id of ``<image>``.
    """

    model: nn.Module
    image_token_id: int

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """Width of the input embeddings (what a fully autoregressive fusion's visual tokens must have)."""

    @abstractmethod
    def embed(self, input_ids: Tensor) -> Tensor:
        """input_ids [B, T] -> input embeddings [B, T, hidden_size]."""

    @classmethod
    def declared_hidden_size(cls, cfg: Mapping) -> int | None:
        """The hidden size that a config of this class declares (``None``: known only once built)."""
        return None

    @classmethod
    def without_weights(cls, cfg: Mapping) -> dict:
        """``cfg`` changed to build the same architecture without loading any weights (for profiling on the
        meta device); raises ``ValueError`` when the architecture is known only from the weights' files."""
        return dict(cfg)
