"""Loading experiment configs: MMEngine configs plus vlkit's conventions.

An experiment file names its parts at the top level (``vision_encoder``, ``connector``, ``language_model``,
``fusion``) and the shared settings once (``data_root``, ``image_size``); :func:`load_config` assembles
``model`` from the parts and fills every argument that a registered component declares as shared
(:func:`vlkit.registry.shared_settings`) and its config leaves ``None``, so no dimension or path is
written twice. ``--cfg-options`` may name a part either way: ``connector.num_latents=16`` or
``model.connector.num_latents=16`` (as ``tools/print_config.py`` shows it).
"""

from __future__ import annotations

import os.path as osp
import warnings
from typing import Any

from mmengine.config import Config, ConfigDict
from mmengine.utils import import_modules_from_strings

from . import registry as R
from .models import DEFAULT_FUSION, VisionLanguageModel

MODEL_PARTS = VisionLanguageModel.PARTS
# top-level keys that assemble() copies into `model`: an option on `model.KEY` is an option on `KEY`
ASSEMBLED_FROM_TOP_LEVEL = (*MODEL_PARTS, 'image_size')
COMPONENT_REGISTRIES = (
    R.DATASETS, R.FUNCTIONS, R.VISION_ENCODERS, R.CONNECTORS, R.LANGUAGE_MODELS, R.FUSIONS, R.MODELS,
    R.METRICS,
)  # fmt: skip


def _declared_settings(obj_type: Any) -> tuple[str, ...]:
    """The shared settings that the component ``obj_type`` names (a registered name or a class) declares."""
    found = (R.component_class(registry, obj_type) for registry in COMPONENT_REGISTRIES)
    return getattr(next((f for f in found if f is not None), None), 'shared_settings', ())


def _fill_shared(node: Any, values: dict[str, Any]) -> None:
    if isinstance(node, dict):
        declared = _declared_settings(node['type']) if 'type' in node else ()
        for key, value in node.items():
            if value is None and key in declared and key in values:
                node[key] = values[key]
            else:
                _fill_shared(value, values)
    elif isinstance(node, list | tuple):
        for item in node:
            _fill_shared(item, values)


def declared_preprocessing(encoder: Any) -> dict | None:
    """The image preprocessing the encoder's class declares for its config (``None``: the default)."""
    cls = R.component_class(R.VISION_ENCODERS, encoder.get('type')) if isinstance(encoder, dict) else None
    declared = getattr(cls, 'declared_preprocessing', None)
    return declared(encoder) if declared is not None else None


def _fill_schedule(cfg: Config) -> None:
    """``end=None`` in a parameter scheduler and a missing ``val_interval`` mean "at ``max_iters``"; a
    schedule longer than ``max_iters`` (``--cfg-options train_cfg.max_iters=30``) is cut to fit."""
    train_cfg = cfg.get('train_cfg') or {}
    max_iters = train_cfg.get('max_iters')
    if max_iters is None:
        return
    if train_cfg.get('val_interval') is None:
        train_cfg['val_interval'] = max_iters
    schedulers = [s for s in cfg.get('param_scheduler') or [] if s.get('begin', 0) < max_iters]
    for scheduler in schedulers:
        if scheduler.get('end', 0) is None or scheduler.get('end', 0) > max_iters:
            scheduler['end'] = max_iters
    if 'param_scheduler' in cfg:
        cfg.param_scheduler = schedulers


def assemble(cfg: Config) -> Config:
    """Builds ``cfg.model`` from the top-level parts and fills the shared settings."""
    if 'model' not in cfg:
        missing = [p for p in MODEL_PARTS[:3] if p not in cfg]
        if missing:
            raise KeyError(f'{cfg.filename}: no `model` and no top-level {missing} to build it from')
        parts = {p: cfg[p] for p in MODEL_PARTS if p in cfg}
        if parts.get('fusion') is None:
            parts['fusion'] = ConfigDict(type=DEFAULT_FUSION)
        cfg.model = ConfigDict(type='VisionLanguageModel', image_size=cfg.get('image_size', 64), **parts)
        if 'model_settings' in cfg:
            cfg.model.update(cfg.model_settings)
    shared = {k: cfg.get(k) for k in ('data_root', 'image_size') if cfg.get(k) is not None}
    _fill_shared(cfg._cfg_dict, shared)
    tokenizer = (cfg.model.get('language_model') or {}).get('tokenizer')
    if tokenizer is not None:
        _fill_shared(cfg._cfg_dict, {'tokenizer': tokenizer})
    processor = declared_preprocessing(cfg.model.get('vision_encoder'))
    if processor is not None:
        _fill_shared(cfg._cfg_dict, {'image_processor': processor})
    _fill_schedule(cfg)
    return cfg


def _part_options(cfg: Config, options: dict) -> dict:
    """``model.connector.x`` -> ``connector.x`` (and ``model.KEY`` -> ``model_settings.KEY``) for a config
    whose model is assembled from top-level parts, so that both spellings set the same thing."""
    if 'model' in cfg:
        return options
    out = {}
    for key, value in options.items():
        head, _, rest = key.partition('.')
        if head == 'model' and rest:
            first = rest.split('.', 1)[0]
            key = rest if first in ASSEMBLED_FROM_TOP_LEVEL else f'model_settings.{rest}'
        out[key] = value
    return out


def _migrate(cfg: Config) -> None:
    """Accepts spellings of earlier versions, with a warning that says what to write instead."""
    imports = (cfg.get('custom_imports') or {}).get('imports') or []
    renamed = [f'vlkit.{m}' if m == 'connectors' or m.startswith('connectors.') else m for m in imports]
    if renamed != list(imports):
        cfg.custom_imports.imports = renamed
        warnings.warn(
            f"{cfg.filename}: the built-in connectors' package 'connectors' is now 'vlkit.connectors'; "
            f'write custom_imports = dict(imports={renamed})',
            FutureWarning,
            stacklevel=3,
        )
    encoder = cfg.get('vision_encoder')
    if isinstance(encoder, dict) and 'pretrain' in encoder:
        old = encoder.pop('pretrain')
        stage = None if old is None else {k: v for k, v in old.items() if v is not None}
        cfg.encoder_pretraining = stage
        warnings.warn(
            f'{cfg.filename}: vision_encoder.pretrain is now a stage of its own; write '
            f'encoder_pretraining = {stage!r} at the top level (docs/architecture.md, "Stages")',
            FutureWarning,
            stacklevel=3,
        )


def load_config(path: str, cfg_options: dict | None = None) -> Config:
    """Reads an experiment config, applies ``--cfg-options`` and assembles it (see module docstring)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path, import_custom_modules=False)
    if cfg_options:
        cfg.merge_from_dict(_part_options(cfg, cfg_options))
    _migrate(cfg)
    if cfg.get('custom_imports'):  # a user's plug-ins register their parts before anything is built
        import_modules_from_strings(**cfg.custom_imports)
    return assemble(cfg)
