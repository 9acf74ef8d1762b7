"""The fusion contract: how a connector's visual tokens reach the language model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn


def image_markers(input_ids: Tensor, image_token_id: int, num_images: int) -> Tensor:
    """[B, T] bool, True at the ``<image>`` markers, after checking that there is one per image."""
    is_image = input_ids == image_token_id
    num_markers = int(is_image.sum())
    if num_markers != num_images:
        raise ValueError(f'the batch has {num_markers} {image_token_id=} markers but {num_images} images')
    return is_image


class Fusion(nn.Module, ABC):
    """Turns text ids and per-image visual tokens into the language model's inputs.

    The model builder calls :meth:`attach` once with the built language model; each call of the language model
    (a forward pass or a whole ``generate``) runs inside :meth:`conditioning` with what :meth:`forward`
    returned.
    """

    def connector_out_dim(self, llm_hidden_size: int) -> int | None:
        """The width the connector must produce (``None``: keep the encoder's width)."""
        return llm_hidden_size

    def attach(self, language_model: nn.Module) -> None:
        """Called once after the language model is built (``vlkit.models.llms.HFCausalLM``). Fusions that act
        inside the language model build their layers and register their hooks here; the default does
        nothing."""

    @contextmanager
    def conditioning(self, inputs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The scope of one language-model call on ``inputs`` (what :meth:`forward` returned, ``labels``
        removed): yields the keyword arguments for the language model. Fusions that condition the language
        model's layers take their own keys out of ``inputs`` and hold that context only inside this scope;
        the default passes ``inputs`` through."""
        yield inputs

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
        visual_lengths: Tensor | None = None,
    ) -> dict[str, Any]:
        """Returns keyword arguments for the language model (``inputs_embeds``, ``attention_mask``, ...)
        and ``labels`` aligned with them.

        Args:
            text_embeds: [B, T, D] embeddings of ``input_ids``.
            input_ids: [B, T] with one ``image_token_id`` per image.
            attention_mask: [B, T], 1 for real tokens.
            visual_tokens: [num_images, M, D], images in the order their markers appear (row-major).
            labels: [B, T] or None.
            align_right: end every row at the last column (left padding, for generation).
            visual_lengths: [num_images] how many of each image's M rows of ``visual_tokens`` are real
                when images have different token counts (any-resolution crops: ``M`` is the longest image,
                the rest is zero padding to ignore); ``None``: all M.
        """
