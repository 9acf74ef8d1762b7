"""Loading experiment configs: MMEngine configs plus vlkit's conventions.

An experiment file names its parts at the top level (``vision_encoder``, ``connector``, ``language_model``,
``fusion``) and the shared settings once (``data_root``, ``image_size``); :func:`load_config` assembles
``model`` from the parts and fills every ``None`` placeholder of a shared setting (``data_root``,
``image_size``, ``tokenizer``) in the data and model dicts, so no dimension or path is written twice.
"""

from __future__ import annotations

import os.path as osp
from typing import Any

from mmengine.config import Config, ConfigDict

MODEL_PARTS = ('vision_encoder', 'connector', 'language_model', 'fusion')


def _fill_placeholders(node: Any, values: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None and key in values:
                node[key] = values[key]
            else:
                _fill_placeholders(value, values)
    elif isinstance(node, list | tuple):
        for item in node:
            _fill_placeholders(item, values)


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
    """Builds ``cfg.model`` from the top-level parts and fills the shared placeholders."""
    if 'model' not in cfg:
        missing = [p for p in MODEL_PARTS[:3] if p not in cfg]
        if missing:
            raise KeyError(f'{cfg.filename}: no `model` and no top-level {missing} to build it from')
        parts = {p: cfg[p] for p in MODEL_PARTS if p in cfg}
        cfg.model = ConfigDict(type='VisionLanguageModel', image_size=cfg.get('image_size', 64), **parts)
        if 'model_settings' in cfg:
            cfg.model.update(cfg.model_settings)
    shared = {'data_root': cfg.get('data_root'), 'image_size': cfg.get('image_size')}
    shared['tokenizer'] = cfg.model.language_model.get('tokenizer')
    _fill_placeholders(cfg._cfg_dict, {k: v for k, v in shared.items() if v is not None})
    _fill_schedule(cfg)
    return cfg


def load_config(path: str, cfg_options: dict | None = None) -> Config:
    """Reads an experiment config, applies ``--cfg-options`` and assembles it (see module docstring)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return assemble(cfg)
