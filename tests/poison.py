"""A test-only model that turns its loss, or its gradients, non-finite at chosen training iterations.

Loaded by configs through ``custom_imports=dict(imports=['tests.poison'])``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vlkit.models.vlm import VisionLanguageModel
from vlkit.registry import MODELS


@MODELS.register_module()
class PoisonedVisionLanguageModel(VisionLanguageModel):
    """``VisionLanguageModel`` whose ``k``-th training loss (1-based, for ``k`` in ``poison_at``) is poisoned.

    Args:
        poison_at: the training calls to poison.
        poison: ``'loss'`` makes the loss NaN; ``'grad'`` keeps the loss finite but makes the gradient NaN.
    """

    def __init__(self, *, poison_at: list[int], poison: str = 'loss', **kwargs) -> None:
        super().__init__(**kwargs)
        self.poison_at, self.poison, self.calls = set(poison_at), poison, 0

    def loss(self, images, input_ids, attention_mask, labels, crop_counts=None) -> Tensor:
        loss = super().loss(images, input_ids, attention_mask, labels, crop_counts)
        if not self.training:
            return loss
        self.calls += 1
        if self.calls not in self.poison_at:
            return loss
        if self.poison == 'loss':
            return loss * float('nan')
        weight = next(p for p in self.connector.parameters() if p.requires_grad)
        return loss + torch.sqrt(weight.sum() * 0)  # value + 0, gradient 0 * inf = nan
