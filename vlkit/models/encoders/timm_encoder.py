from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ...registry import VISION_ENCODERS
from .base import VisionEncoder, VisualFeatures, as_hw


@VISION_ENCODERS.register_module()
class TimmVisionEncoder(VisionEncoder):
    """Any timm model's final feature map as visual tokens (prefix/CLS tokens dropped).

    Args:
        model_name: a timm architecture name.
        pretrained: load timm's published weights (a download; keep False offline).
        model_kwargs: constructor arguments for the architecture (``img_size``, ``embed_dim``, ...).
        checkpoint: a local state dict (``.pth``/``.safetensors``) to load into the timm model, e.g. the
            file the ``encoder_pretraining`` stage writes (:mod:`vlkit.engine.encoder_pretraining`).
    """

    file_arguments = ('checkpoint',)  # local files (config checks)

    def __init__(
        self,
        *,
        model_name: str = 'vit_tiny_patch16_224',
        pretrained: bool = False,
        model_kwargs: dict | None = None,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        import timm

        self.model = timm.create_model(
            model_name, pretrained=pretrained, num_classes=0, **(model_kwargs or {})
        )
        if checkpoint is not None:
            self.model.load_state_dict(_load_state_dict(checkpoint))

    @property
    def out_dim(self) -> int:
        return self.model.num_features

    @classmethod
    def declared_width(cls, cfg: Mapping) -> int | None:
        return (cfg.get('model_kwargs') or {}).get('embed_dim')  # a ViT's width; convnets: once built

    @classmethod
    def declared_input_size(cls, cfg: Mapping) -> int | tuple[int, int] | None:
        return (cfg.get('model_kwargs') or {}).get('img_size')

    @classmethod
    def without_weights(cls, cfg: Mapping) -> dict:
        return {**cfg, 'pretrained': False, 'checkpoint': None}

    def grid_size(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        h, w = as_hw(image_size)
        if hasattr(self.model, 'patch_embed'):
            ph, pw = self.model.patch_embed.patch_size
            return h // ph, w // pw
        reduction = self.model.feature_info[-1]['reduction']
        return h // reduction, w // reduction

    def forward(self, images: Tensor) -> VisualFeatures:
        # images [N, 3, H, W] -> tokens [N, h * w, out_dim]
        feats = self.model.forward_features(images)
        if feats.dim() == 4:  # convolutional: [N, C, h, w]
            grid = tuple(feats.shape[-2:])
            return VisualFeatures(feats.flatten(2).transpose(1, 2), grid)
        prefix = getattr(self.model, 'num_prefix_tokens', 0)
        return VisualFeatures(feats[:, prefix:], self.grid_size(tuple(images.shape[-2:])))


def _load_state_dict(path: str) -> dict[str, Tensor]:
    """Loads weights from outside the toolkit safely: safetensors, or torch with ``weights_only=True``."""
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location='cpu', weights_only=True)
