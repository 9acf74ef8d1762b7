"""Parameter counts per model part."""

from __future__ import annotations

from torch import nn

from ..models import VisionLanguageModel

MODEL_PARTS = VisionLanguageModel.PARTS


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters of a ``VisionLanguageModel``, in total and per top-level part, all and trainable only.

    Returns:
        ``params/total``, ``params/trainable``, and ``params/<part>``, ``trainable/<part>`` for each part in
        ``vision_encoder``, ``connector``, ``language_model``, ``fusion`` (0 for a part the model lacks). A
        parameter shared by several modules counts once, for the first part that holds it in that order.
    """
    owner: dict[int, str] = {}
    for part in MODEL_PARTS:
        module = getattr(model, part, None)
        for p in module.parameters() if isinstance(module, nn.Module) else ():
            owner.setdefault(id(p), part)
    counts = {'params/total': 0, 'params/trainable': 0}
    counts.update({f'params/{part}': 0 for part in MODEL_PARTS})
    counts.update({f'trainable/{part}': 0 for part in MODEL_PARTS})
    for p in model.parameters():  # each shared parameter once
        part = owner.get(id(p))
        counts['params/total'] += p.numel()
        if part is not None:
            counts[f'params/{part}'] += p.numel()
        if p.requires_grad:
            counts['params/trainable'] += p.numel()
            if part is not None:
                counts[f'trainable/{part}'] += p.numel()
    return counts
