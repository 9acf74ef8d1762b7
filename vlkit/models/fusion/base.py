"""The fusion contract: how a connector's visual tokens reach the language model."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn


class Fusion(nn.Module, ABC):
    """Turns text ids and per-image visual tokens into the language model's inputs."""

    def connector_out_dim(self, llm_hidden_size: int) -> int | None:
        """The width the connector must produce (``None``: keep the encoder's width)."""
        return llm_hidden_size

    @abstractmethod
    def forward(
        self,
        text_embeds: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        visual_tokens: Tensor,
        image_token_id: int,
        labels: Tensor | None = None,
        align_right: bool = False,
    ) -> dict[str, Tensor]:
        """Returns keyword arguments for the language model (``inputs_embeds``, ``attention_mask``, ...)
        and ``labels`` aligned with them.

        Args:
            text_embeds: [B, T, D] embeddings of ``input_ids``.
            input_ids: [B, T] with one ``image_token_id`` per image.
            attention_mask: [B, T], 1 for real tokens.
            visual_tokens: [num_images, M, D], images in the order their markers appear (row-major).
            labels: [B, T] or None.
            align_right: end every row at the last column (left padding, for generation).
        """
