from __future__ import annotations

import json
import os
from collections.abc import Mapping

from torch import Tensor

from ...pretrained import resolve_pretrained
from ...registry import VISION_ENCODERS
from ..hf_parts import architecture_only, attend_through_vlkit, from_pretrained
from .base import VisionEncoder, VisualFeatures, as_hw

PIL_RESAMPLE_NAMES = {0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'box', 5: 'hamming'}


@VISION_ENCODERS.register_module()
class HFVisionEncoder(VisionEncoder):
    """A Hugging Face vision tower (SigLIP, CLIP, DINOv2, ...): patch tokens of one hidden layer, CLS dropped.

    Which weights train is the model's ``vision_encoder.train`` (:mod:`vlkit.models.training`).

    Args:
        model: a model name or local directory (``from_pretrained``; :mod:`vlkit.pretrained` says where a
            name is looked for), or a config dict with ``model_type`` (e.g. ``'siglip_vision_model'``) for a
            randomly initialised tower.
        layer: index into ``hidden_states`` (LLaVA takes ``-2`` of CLIP); ``None`` takes the final,
            post-normalised ``last_hidden_state`` (BLIP-3's SigLIP).
        pretrained: a name or local directory whose weights to load (``from_pretrained``) in place of the
            random tower that a ``model`` dict describes; the dict then documents the architecture and is
            what profiling builds without weights (``vlkit.analysis``).
        trust_remote_code: run code shipped with the checkpoint (off unless a config turns it on).
        preprocessing: the images' preprocessing, declared here where no ``preprocessor_config.json`` comes
            with the weights (an imported model: ``tools/import_hf.py`` writes its processor's): ``mean``,
            ``std``, ``size``, ``resample`` and ``shortest_edge``, as :meth:`declared_preprocessing` gives
            them. The data pipeline reads it; the tower does not.
    """

    def __init__(
        self,
        *,
        model: str | dict,
        layer: int | None = None,
        pretrained: str | None = None,
        trust_remote_code: bool = False,
        preprocessing: dict | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if pretrained is not None:
            self.model = from_pretrained(
                AutoModel, 'vision_encoder.pretrained', pretrained, trust_remote_code
            )
        elif isinstance(model, dict):
            kwargs = dict(model)
            self.model = AutoModel.from_config(AutoConfig.for_model(kwargs.pop('model_type'), **kwargs))
        else:
            self.model = from_pretrained(AutoModel, 'vision_encoder.model', model, trust_remote_code)
        attend_through_vlkit(self.model)
        if hasattr(self.model, 'vision_model') and not hasattr(self.model.config, 'patch_size'):
            self.model = self.model.vision_model  # a full CLIP/SigLIP checkpoint: keep the vision tower
        self.layer = layer

    @property
    def config(self):
        return getattr(self.model.config, 'vision_config', self.model.config)

    @property
    def out_dim(self) -> int:
        return self.config.hidden_size

    @classmethod
    def declared_width(cls, cfg: Mapping) -> int | None:
        model = cfg.get('model')
        return model.get('hidden_size') if isinstance(model, Mapping) else None

    @classmethod
    def declared_input_size(cls, cfg: Mapping) -> int | tuple[int, int] | None:
        model = cfg.get('model')
        return model.get('image_size') if isinstance(model, Mapping) else None

    @classmethod
    def without_weights(cls, cfg: Mapping) -> dict:
        return architecture_only('vision_encoder', cfg)

    @classmethod
    def declared_preprocessing(cls, cfg: Mapping) -> dict | None:
        """Mean, std, size and resample from the checkpoint's own ``preprocessor_config.json``, when
        ``pretrained`` or ``model`` names a directory that has one (a directory, a name under
        ``$VLKIT_WEIGHTS``: :func:`vlkit.pretrained.resolve_pretrained`, or a hub name in the local Hugging
        Face cache); with ``shortest_edge`` where the checkpoint resizes the shortest edge and then crops the
        centre (CLIP)."""
        if cfg.get('preprocessing') is not None:
            return dict(cfg['preprocessing'])
        config = cls._preprocessor_config(cfg)
        return None if config is None else preprocessing_of(config)

    @staticmethod
    def _preprocessor_config(cfg: Mapping) -> dict | None:
        for source in (cfg.get('pretrained'), cfg.get('model')):
            if not isinstance(source, str):
                continue
            path = os.path.join(resolve_pretrained(source), 'preprocessor_config.json')
            path = path if os.path.isfile(path) else _hub_cache_file(source, 'preprocessor_config.json')
            if path is not None:
                with open(path) as f:
                    return json.load(f)
        return None

    def grid_size(self, image_size: int | tuple[int, int]) -> tuple[int, int]:
        h, w = as_hw(image_size)
        return h // self.config.patch_size, w // self.config.patch_size

    def forward(self, images: Tensor) -> VisualFeatures:
        # images [N, 3, H, W] -> tokens [N, h * w, out_dim]
        out = self.model(pixel_values=images, output_hidden_states=self.layer is not None)
        hidden = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        grid = self.grid_size(tuple(images.shape[-2:]))
        prefix = hidden.shape[1] - grid[0] * grid[1]  # CLS (CLIP) or none (SigLIP)
        return VisualFeatures(hidden[:, prefix:], grid)


def _hub_cache_file(name: str, filename: str) -> str | None:
    """``filename`` of hub model ``name`` in the local Hugging Face cache, if there (nothing is fetched)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, filename)
    except ValueError:  # not a hub name (a path that does not exist)
        return None
    return found if isinstance(found, str) else None


def preprocessing_of(config: Mapping) -> dict:
    """What an image processor's settings (a ``preprocessor_config.json``, or an image processor's
    ``to_dict()``) do, as vlkit declares preprocessing: ``mean``, ``std``, ``size``, ``resample``, and
    ``shortest_edge`` where it resizes the shortest edge and then crops the centre (CLIP)."""
    crop = config.get('crop_size') if config.get('do_center_crop') else None
    resize = config.get('size')  # a number is the shortest edge (openai/clip-vit-large-patch14-336's)
    shortest_edge = resize.get('shortest_edge') if isinstance(resize, Mapping) else resize
    size = crop or resize
    if isinstance(size, Mapping):
        size = size.get('shortest_edge') or (
            size['height'] if size['height'] == size['width'] else (size['height'], size['width'])
        )
    declared = {
        'mean': tuple(config.get('image_mean', (0.5,) * 3)),
        'std': tuple(config.get('image_std', (0.5,) * 3)),
        'size': size,
        'resample': PIL_RESAMPLE_NAMES.get(config.get('resample', 3), 'bicubic'),
    }
    if crop and shortest_edge:
        declared['shortest_edge'] = shortest_edge
    return declared
