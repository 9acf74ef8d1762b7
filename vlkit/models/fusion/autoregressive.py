from __future__ import annotations

import torch
from torch import Tensor

from ...registry import FUSIONS
from .base import Fusion

IGNORE_INDEX = -100


@FUSIONS.register_module()
class AutoregressiveFusion(Fusion):
    """Fully autoregressive fusion (LLaVA, MM1, Idefics2, BLIP-3): each ``<image>`` marker is replaced by
    that image's M visual tokens in the input embeddings; their labels are ignored."""

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
        # text_embeds [B, T, D], visual_tokens [I, M, D] -> inputs_embeds [B, T + n_b * (M - 1), D]
        is_image = input_ids == image_token_id
        num_markers, (num_images, m, _) = int(is_image.sum()), visual_tokens.shape
        if num_markers != num_images:
            raise ValueError(f'the batch has {num_markers} {image_token_id=} markers but {num_images} images')
        span = torch.where(is_image, m, 1)  # how many output positions each input token takes
        end = span.cumsum(1)
        start = end - span
        if align_right:
            start = start + (end[:, -1:].max() - end[:, -1:])
        length = int(end[:, -1].max())
        b, t = text_embeds.shape[:2]
        rows, cols = (~is_image).nonzero(as_tuple=True)
        img_rows, img_cols = is_image.nonzero(as_tuple=True)
        img_pos = start[img_rows, img_cols][:, None] + torch.arange(m, device=start.device)  # [I, M]

        embeds = text_embeds.new_zeros(b, length, text_embeds.shape[-1])
        embeds[rows, start[rows, cols]] = text_embeds[rows, cols]
        embeds[img_rows[:, None], img_pos] = visual_tokens.to(embeds.dtype)
        mask = attention_mask.new_zeros(b, length)
        mask[rows, start[rows, cols]] = attention_mask[rows, cols]
        mask[img_rows[:, None], img_pos] = 1
        out = {'inputs_embeds': embeds, 'attention_mask': mask}
        if labels is not None:
            new_labels = labels.new_full((b, length), IGNORE_INDEX)
            new_labels[rows, start[rows, cols]] = labels[rows, cols]
            out['labels'] = new_labels
        return out
