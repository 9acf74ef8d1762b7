from __future__ import annotations

import torch

from ...constants import IGNORE_INDEX
from ...registry import FUSIONS
from .base import Fusion, FusionInputs, LanguageModelInputs, image_markers


@FUSIONS.register_module()
class AutoregressiveFusion(Fusion):
    """Fully autoregressive fusion (LLaVA, MM1, Idefics2, BLIP-3): each ``<image>`` marker is replaced by
    that image's visual tokens in the input embeddings (M each, or ``visual_lengths[i]`` of them when
    images differ, as with any-resolution crops); their labels are ignored."""

    splices_visual_tokens = True

    def forward(self, inputs: FusionInputs) -> LanguageModelInputs:
        # text_embeds [B, T, D], visual_tokens [I, M, D] -> inputs_embeds [B, T + sum_b (lengths - 1), D]
        input_ids, visual_tokens, text_embeds = inputs.input_ids, inputs.visual_tokens, inputs.text_embeds
        num_images, m, _ = visual_tokens.shape
        is_image = image_markers(input_ids, inputs.image_token_id, num_images)
        visual_lengths = inputs.visual_lengths
        if visual_lengths is None:
            visual_lengths = torch.full((num_images,), m, device=input_ids.device)
        span = torch.ones_like(input_ids)  # how many output positions each input token takes
        span[is_image] = visual_lengths.to(span)
        end = span.cumsum(1)
        start = end - span
        if inputs.align_right:
            start = start + (end[:, -1:].max() - end[:, -1:])
        length = int(end[:, -1].max())
        b, t = text_embeds.shape[:2]
        rows, cols = (~is_image).nonzero(as_tuple=True)
        img_rows, img_cols = is_image.nonzero(as_tuple=True)
        offsets = torch.arange(m, device=start.device)
        real = offsets < visual_lengths.to(start)[:, None]  # [I, M]: the image's tokens, not padding
        img_pos = (start[img_rows, img_cols][:, None] + offsets)[real]
        img_rows = img_rows[:, None].expand(-1, m)[real]

        embeds = text_embeds.new_zeros(b, length, text_embeds.shape[-1])
        embeds[rows, start[rows, cols]] = text_embeds[rows, cols]
        embeds[img_rows, img_pos] = visual_tokens[real].to(embeds.dtype)
        mask = inputs.attention_mask.new_zeros(b, length)
        mask[rows, start[rows, cols]] = inputs.attention_mask[rows, cols]
        mask[img_rows, img_pos] = 1
        labels = None
        if inputs.labels is not None:
            labels = inputs.labels.new_full((b, length), IGNORE_INDEX)
            labels[rows, start[rows, cols]] = inputs.labels[rows, cols]
        return LanguageModelInputs(embeds, mask, labels)
