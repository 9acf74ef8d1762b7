"""What the pretraining stages share: their config keys, how a stage reads its settings, its cache key and
its learning-rate schedule (docs/architecture.md, "Stages").

A pretraining stage is a top-level config key that trains one part once, before the model is built, caches
the result under ``data_root`` and points the part's config at it (:mod:`vlkit.engine.encoder_pretraining`,
:mod:`vlkit.engine.llm_pretraining`). A checkpoint of a trained model holds every weight, so whatever loads
one (``tools/test.py``, :func:`vlkit.inference.load_model`) drops these keys.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

PRETRAINING_STAGES = ('encoder_pretraining', 'llm_pretraining')  # in the order tools/train.py runs them
# each stage -> the model part it trains and the key of that part which it points at its result
WEIGHTS_SET_BY = {'encoder_pretraining': ('vision_encoder', 'checkpoint'),
                  'llm_pretraining': ('language_model', 'pretrained')}  # fmt: skip


def stage_settings(cfg: Any, key: str, defaults: Mapping, inherited: Mapping) -> dict | None:
    """The settings of the config's stage ``key``: what it sets, over ``inherited`` (settings that default to
    the rest of the config, e.g. ``data_root``), over ``defaults``; ``None`` when the config has no such
    stage. A setting that is neither is refused, naming it and the known ones."""
    stage = cfg.get(key)
    if not stage:
        return None
    known = {*defaults, *inherited}
    unknown = sorted(set(stage) - known)
    if unknown:
        raise KeyError(f'{key}: unknown setting(s) {unknown}; it takes {sorted(known)}')
    return {**defaults, **inherited, **{k: v for k, v in stage.items() if v is not None}}


def second_weights_source(cfg: Any, key: str) -> tuple[str, str] | None:
    """``(where, what)`` when the config runs stage ``key`` and also sets the weights the stage would set
    (the part's :data:`WEIGHTS_SET_BY` key): ``where`` names that key (``'vision_encoder.checkpoint'``),
    ``what`` the part (``'encoder'``); ``None`` when it does not."""
    part, weights_key = WEIGHTS_SET_BY[key]
    if not (cfg.get(key) and cfg.model[part].get(weights_key)):
        return None
    return f'{part}.{weights_key}', part.replace('_', ' ').replace('vision ', '')


def part_config(cfg: Any, key: str) -> dict:
    """The model part that stage ``key`` trains, as a plain dict; refused (ValueError) when the config also
    sets the weights the stage would set."""
    part, weights_key = WEIGHTS_SET_BY[key]
    conflict = second_weights_source(cfg, key)
    if conflict:
        where, what = conflict
        raise ValueError(
            f'{where}={cfg.model[part][weights_key]!r} and {key} both set the {what} weights; drop one (set '
            f'{key}=None to use {where})'
        )
    return plain_dict(cfg.model[part])


def build_once(path: Path, build: Callable[[Path], object]) -> None:
    """Runs ``build(path)`` unless ``path`` exists, under a file lock: concurrent runs of one stage build its
    result once, and the others wait for it and find it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f'{path}.lock'):
        if not path.exists():
            build(path)


def plain_dict(node: Any) -> dict:
    """A part's config as a plain dict (a ``ConfigDict``'s ``to_dict``)."""
    return node.to_dict() if hasattr(node, 'to_dict') else dict(node)


def cache_key(what: Mapping) -> str:
    """A short hash of everything a stage's result depends on (JSON, keys sorted)."""
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]


def warmup_cosine(optim: torch.optim.Optimizer, iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over the first 5% of ``iters``, then a cosine decay to zero at ``iters``."""
    warmup = max(1, iters // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        optim, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, iters) / iters))
    )
