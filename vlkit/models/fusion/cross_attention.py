"""Flamingo's gated cross-attention fusion: the language model's layers attend to the visual tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn

from ...registry import FUSIONS
from ..layers import FeedForward, MultiheadAttention
from ..training import has_lora
from .base import Fusion, FusionInputs, LanguageModelInputs, image_markers


@dataclass(frozen=True)
class MediaContext:
    """What the cross-attention blocks see during one language-model call.

    Attributes:
        media: [B, N, M, D] each sample's images in marker order; N is the most images in one sample, and the
            slots of samples with fewer images are zeros that no token attends to.
        media_index: [B, T] the 1-based number of the most recent ``<image>`` marker at or before each token
            (the marker itself included), 0 before the first one: Flamingo's ``media_locations.cumsum``.
        media_lengths: [B, N] how many of each image's M tokens are real when images differ in length
            (any-resolution crops); ``None``: all of them.
    """

    media: Tensor
    media_index: Tensor
    media_lengths: Tensor | None = None

    def index_for(self, hidden_states: Tensor) -> Tensor:
        """[B, L] image number per position of ``hidden_states`` [B, L, D]: per token for the whole sequence;
        for any other length (new tokens during cached decoding) the sample's last image."""
        b, length = hidden_states.shape[:2]
        if b != self.media_index.shape[0]:
            raise ValueError(
                f'hidden states of batch size {b} reach a cross-attention block whose media context holds '
                f'{self.media_index.shape[0]} samples'
            )
        if length == self.media_index.shape[1]:
            return self.media_index
        return self.media_index[:, -1:].expand(b, length)


class GatedCrossAttentionBlock(nn.Module):
    """Flamingo's GATED XATTN-DENSE block: cross-attention from the text to its image, then a feed-forward,
    each added to the residual stream through a ``tanh`` gate initialised to 0.

    Keys follow open_flamingo's ``GatedCrossAttentionBlock`` except that its ``attn.norm`` is ``norm`` here.

    Args:
        dim: the language model's hidden size.
        kv_dim: the width of the visual tokens.
        num_heads: attention heads.
        head_dim: width of each head.
        ff_mult: the feed-forward's hidden width is ``dim * ff_mult``.
        gated: add the ``tanh`` gates (``False``: plain residual additions).
        backend: attention backend, see :func:`vlkit.ops.attention`.
    """

    def __init__(
        self,
        dim: int,
        *,
        kv_dim: int,
        num_heads: int = 8,
        head_dim: int = 64,
        ff_mult: int = 4,
        gated: bool = True,
        backend: str = 'auto',
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(
            dim, num_heads=num_heads, head_dim=head_dim, kv_dim=kv_dim, backend=backend
        )
        self.ff = FeedForward(dim, dim * ff_mult)
        self.attn_gate = nn.Parameter(torch.zeros(1)) if gated else None
        self.ff_gate = nn.Parameter(torch.zeros(1)) if gated else None

    @staticmethod
    def _gated(x: Tensor, gate: Tensor | None) -> Tensor:
        return x if gate is None else x * gate.tanh()

    def forward(
        self, x: Tensor, media: Tensor, media_index: Tensor, media_lengths: Tensor | None = None
    ) -> Tensor:
        # x [B, T, dim], media [B, N, M, kv_dim], media_index [B, T] (1-based image, 0 = none),
        # media_lengths [B, N] (real tokens per image) or None -> [B, T, dim]
        num_images, m = media.shape[1:3]
        if num_images:  # without any image, every token's cross-attention output is zero
            key_image = torch.arange(1, num_images + 1, device=x.device).repeat_interleave(m)  # [N * M]
            mask = media_index[:, :, None] == key_image  # [B, T, N * M]: the most recent image only
            if media_lengths is not None:  # and only its real tokens
                real = torch.arange(m, device=x.device) < media_lengths[..., None]  # [B, N, M]
                mask = mask & real.flatten(1)[:, None, :]
            attended = self.attn(self.norm(x), media.flatten(1, 2).to(x.dtype), mask)
            x = x + self._gated(attended, self.attn_gate)
        return x + self._gated(self.ff(x), self.ff_gate)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Hugging Face causal LM (or a PEFT wrapper of one): the one ``nn.ModuleList``
    child of its decoder that holds ``num_hidden_layers`` modules (``layers`` in Llama, ``h`` in GPT-2)."""
    base = model.get_base_model() if hasattr(model, 'get_base_model') else model
    decoder = base.get_decoder() if hasattr(base, 'get_decoder') else base
    n = base.config.get_text_config().num_hidden_layers
    found = [c for c in decoder.children() if isinstance(c, nn.ModuleList) and len(c) == n]
    if len(found) != 1:
        raise ValueError(
            f'cannot find the decoder layers of {type(base).__name__}: expected one nn.ModuleList of '
            f'num_hidden_layers={n} modules among the children of {type(decoder).__name__}, '
            f'found {len(found)}'
        )
    return found[0]


@FUSIONS.register_module()
class CrossAttentionFusion(Fusion):
    """Flamingo's fusion: a :class:`GatedCrossAttentionBlock` before every ``every``-th decoder layer of the
    language model (layers ``every - 1``, ``2 * every - 1``, ...); the ``<image>`` markers stay in the text.

    Media masking (Flamingo, ``only_attend_immediate_media``): each token attends only to the visual tokens
    of the most recent ``<image>`` marker at or before it in its own sample; tokens before the first marker
    get zero from the cross-attention. New tokens during generation attend to the sample's last image.

    The blocks are built and hooked in with :meth:`attach` (forward pre-hooks on the decoder layers; the
    language model's classes and ``forward`` stay untouched) and live here, so their parameters appear once,
    under ``fusion.blocks``. :meth:`forward` returns the :class:`MediaContext` as the inputs'
    ``conditioning``, and :meth:`call_language_model` shows it to the hooks for exactly that call; a decoder
    layer that runs outside such a call raises an error instead of skipping its block.

    Args:
        every: a block before every ``every``-th decoder layer.
        gated: ``tanh`` gates initialised to 0, so that at initialisation the model's logits are the bare
            language model's.
        num_heads: cross-attention heads.
        head_dim: width of each head.
        ff_mult: the blocks' feed-forward width is ``ff_mult`` times the language model's hidden size.
        visual_dim: the connector's output width, which the blocks' keys and values read (``None``: the
            language model's hidden size, which every connector can produce).
        freeze_language_model: freeze every language-model weight when attached (Flamingo trains only the
            blocks and the connector); ``False`` leaves the language model's own ``train`` setting.
        backend: attention backend, see :func:`vlkit.ops.attention`.
    """

    splices_visual_tokens = False

    def __init__(
        self,
        every: int = 1,
        gated: bool = True,
        num_heads: int = 8,
        head_dim: int = 64,
        ff_mult: int = 4,
        visual_dim: int | None = None,
        freeze_language_model: bool = True,
        backend: str = 'auto',
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f'fusion.every must be >= 1 (a block before every k-th layer), got {every}')
        self.every = every
        self.visual_dim = visual_dim
        self.freeze_language_model = freeze_language_model
        self.block_args = dict(
            num_heads=num_heads, head_dim=head_dim, ff_mult=ff_mult, gated=gated, backend=backend
        )
        self.blocks = nn.ModuleList()
        self.layer_indices: list[int] = []
        self._active: MediaContext | None = None  # set only inside call_language_model

    def connector_out_dim(self, llm_hidden_size: int) -> int:
        return self.visual_dim or llm_hidden_size

    def attach(self, language_model: nn.Module) -> None:
        if len(self.blocks):
            raise RuntimeError('CrossAttentionFusion is already attached to a language model')
        layers = decoder_layers(language_model.model)
        self.layer_indices = [i for i in range(len(layers)) if (i + 1) % self.every == 0]
        if not self.layer_indices:
            raise ValueError(f"fusion.every={self.every} exceeds the language model's {len(layers)} layers")
        dim = language_model.hidden_size
        kv_dim = self.connector_out_dim(dim)
        for block_index, layer_index in enumerate(self.layer_indices):
            self.blocks.append(GatedCrossAttentionBlock(dim, kv_dim=kv_dim, **self.block_args))
            layers[layer_index].register_forward_pre_hook(
                partial(self._before_layer, block_index), with_kwargs=True
            )
        if self.freeze_language_model:
            if has_lora(language_model):
                raise ValueError(
                    'fusion.freeze_language_model=True would freeze the LoRA adapters of '
                    "language_model.train='lora'; set fusion.freeze_language_model=False to train them"
                )
            language_model.model.requires_grad_(False)

    def _before_layer(self, block_index: int, layer: nn.Module, args: tuple, kwargs: dict) -> tuple:
        """Forward pre-hook of a decoder layer: its input hidden states go through the block first."""
        context = self._active
        if context is None:
            raise RuntimeError(
                'a decoder layer with a cross-attention block ran outside CrossAttentionFusion.'
                'call_language_model, so its block would not see the images; call the language model '
                'through the fusion (VisionLanguageModel does)'
            )
        hidden = args[0] if args else kwargs['hidden_states']
        index = context.index_for(hidden)
        out = self.blocks[block_index](hidden, context.media, index, context.media_lengths)
        if args:
            return (out, *args[1:]), kwargs
        return args, {**kwargs, 'hidden_states': out}

    def forward(self, inputs: FusionInputs) -> LanguageModelInputs:
        # text_embeds [B, T, D], visual_tokens [I, M, Dv] -> inputs_embeds [B, T, D] (unchanged), media;
        # the sequence keeps its length and padding, so ``align_right`` needs nothing here
        input_ids, visual_tokens = inputs.input_ids, inputs.visual_tokens
        is_image = image_markers(input_ids, inputs.image_token_id, visual_tokens.shape[0])
        media_index = is_image.long().cumsum(1)
        b, (_, m, d) = input_ids.shape[0], visual_tokens.shape
        media = visual_tokens.new_zeros(b, int(media_index[:, -1].max()) if b else 0, m, d)
        rows, cols = is_image.nonzero(as_tuple=True)  # row-major: the order of visual_tokens
        slots = (rows, media_index[rows, cols] - 1)
        media[slots] = visual_tokens
        lengths = None
        if inputs.visual_lengths is not None:
            lengths = media_index.new_zeros(media.shape[:2])
            lengths[slots] = inputs.visual_lengths.to(lengths)
        context = MediaContext(media, media_index, lengths)
        return LanguageModelInputs(inputs.text_embeds, inputs.attention_mask, inputs.labels, context)

    @contextmanager
    def _conditioned(self, conditioning: MediaContext) -> Iterator[None]:
        if not isinstance(conditioning, MediaContext):
            raise TypeError(
                'CrossAttentionFusion.call_language_model needs the MediaContext that its forward returns '
                f"as the inputs' conditioning; got {type(conditioning).__name__}"
            )
        if self._active is not None:
            raise RuntimeError(
                'CrossAttentionFusion: a language-model call is already running with its media'
            )
        self._active = conditioning
        try:
            yield
        finally:
            self._active = None
