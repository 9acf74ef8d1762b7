"""The fusion contract: how a connector's visual tokens reach the language model.

A fusion turns :class:`FusionInputs` (text ids and embeddings, the images' visual tokens) into
:class:`LanguageModelInputs` (what the language model is called with, and the labels aligned with it), and
it owns every call of the language model (:meth:`Fusion.call_language_model`), so that a fusion acting
inside the language model (cross-attention) is given its conditioning by every call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn


def image_markers(input_ids: Tensor, image_token_id: int, num_images: int) -> Tensor:
    """[B, T] bool, True at the ``<image>`` markers, after checking that there is one per image."""
    is_image = input_ids == image_token_id
    num_markers = int(is_image.sum())
    if num_markers != num_images:
        raise ValueError(f'the batch has {num_markers} {image_token_id=} markers but {num_images} images')
    return is_image


@dataclass(frozen=True)
class FusionInputs:
    """What a fusion combines for one batch.

    Attributes:
        input_ids: [B, T] text ids with one ``image_token_id`` marker per image.
        attention_mask: [B, T], 1 for real tokens.
        text_embeds: [B, T, D] the language model's embeddings of ``input_ids``.
        visual_tokens: [I, M, Dv] the connector's tokens of the batch's I images, in the order their markers
            appear (row-major).
        image_token_id: the id of the ``<image>`` marker.
        labels: [B, T] or None.
        visual_lengths: [I] how many of each image's M rows of ``visual_tokens`` are real when images have
            different token counts (any-resolution crops: ``M`` is the longest image, the rest is zero
            padding to ignore); ``None``: all M.
        align_right: end every row at the last column (left padding, for generation).
    """

    input_ids: Tensor
    attention_mask: Tensor
    text_embeds: Tensor
    visual_tokens: Tensor
    image_token_id: int
    labels: Tensor | None = None
    visual_lengths: Tensor | None = None
    align_right: bool = False


@dataclass(frozen=True)
class LanguageModelInputs:
    """A fusion's result: the language model's inputs, the labels aligned with them, and the conditioning
    that a fusion acting inside the language model hands to itself for the call.

    Attributes:
        inputs_embeds: [B, L, D].
        attention_mask: [B, L], 1 for real positions.
        labels: [B, L] or None.
        conditioning: fusion-specific (a :class:`~vlkit.models.fusion.MediaContext` for cross-attention);
            ``None`` for fusions that only build the inputs.
    """

    inputs_embeds: Tensor
    attention_mask: Tensor
    labels: Tensor | None = None
    conditioning: Any = None

    def position_ids(self) -> Tensor:
        """[B, L] positions counted over real tokens only, so left padding does not shift them."""
        return (self.attention_mask.cumsum(1) - 1).clamp(min=0)


class Fusion(nn.Module, ABC):
    """Turns :class:`FusionInputs` into :class:`LanguageModelInputs` and runs the language model on them.

    The model builder calls :meth:`attach` once with the built language model. Subclasses declare at class
    level whether they splice visual tokens into the language model's input (:attr:`splices_visual_tokens`),
    so that a config can be checked before anything is built.
    """

    #: True when visual tokens become positions of the language model's input (so the connector's output
    #: width must be the language model's hidden size); False when they reach it another way.
    splices_visual_tokens: ClassVar[bool] = True

    def connector_out_dim(self, llm_hidden_size: int) -> int | None:
        """The width the connector must produce (``None``: keep the encoder's width)."""
        return llm_hidden_size

    def attach(self, language_model: nn.Module) -> None:
        """Called once after the language model is built (``vlkit.models.llms.HFCausalLM``). Fusions that act
        inside the language model build their layers and register their hooks here; the default does
        nothing."""

    @abstractmethod
    def forward(self, inputs: FusionInputs) -> LanguageModelInputs:
        """The language model's inputs for ``inputs`` (see :class:`LanguageModelInputs`)."""

    def call_language_model(
        self, model: nn.Module, inputs: LanguageModelInputs, *, generate: bool = False, **kwargs
    ) -> Any:
        """Runs ``model`` (a Hugging Face causal LM) on ``inputs``: its forward pass, or its ``generate``.

        The one place where a language model is called with fused inputs; ``kwargs`` go to the call
        (``position_ids``, generation settings).
        """
        call = model.generate if generate else model
        with self._conditioned(inputs.conditioning):
            return call(inputs_embeds=inputs.inputs_embeds, attention_mask=inputs.attention_mask, **kwargs)

    @contextmanager
    def _conditioned(self, conditioning: Any) -> Iterator[None]:
        """The scope of one language-model call with ``conditioning``; fusions that act inside the language
        model make it visible to their layers here. The default needs none."""
        yield
