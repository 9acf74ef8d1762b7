"""Encoder pretraining: a stage before VLM training that writes the encoder file ``checkpoint=`` reads.

A frozen *random* encoder gives a connector nothing to work with, so the default tiny encoder is taught to
see first, as BLIP-3 assumes a pretrained SigLIP: every patch token learns the colour, shape and word
under it, whether a shape's centre lies in it, which coloured shape and which shape in which grid cell
it shows; the mean token learns the number of shapes and the image's tags (:func:`scene_tags`: its
coloured shapes and its word, not where they are). The targets come from the synthetic generator's ground
truth (:func:`vlkit.data.synthetic.render`'s label maps).

A config asks for the stage with a top-level ``encoder_pretraining`` dict (``iters``, ``batch_size``,
``lr``, ``bank_size``, ``seed``, ``precision``; ``data_root`` and ``image_size`` default to the config's own,
and the tools set ``precision`` to the run's, vlkit.engine.precision).
``tools/train.py`` runs :func:`ensure_pretrained_encoder` before it builds the model
(``tools/pretrain.py`` runs it alone): the stage trains once, writes
``{data_root}/encoders/{key}.pth`` (the state dict of the encoder's ``model``, keyed by the encoder's config
and the settings) beside a JSON of its settings and
held-out accuracy, and sets ``vision_encoder.checkpoint`` to that file; later runs find it and skip the
training. The stage seeds every generator with its own ``seed``, so its result does not depend on what
ran before it in the process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.runner import set_random_seed
from torch import Tensor, nn
from tqdm import tqdm

from ..data import synthetic
from ..data.prepare import default_data_root
from ..data.transforms import normalize_uint8
from ..ops import autocast
from ..registry import VISION_ENCODERS
from . import stages
from .checkpoint import publish_file

CONFIG_KEY = 'encoder_pretraining'
DEFAULTS = dict(iters=800, batch_size=64, lr=1e-3, bank_size=16_384, seed=0, precision='fp32')
GLOBAL_HEADS = ('count', 'tags')  # read from the mean token; the others from every patch token
BACKGROUND_WEIGHT = 0.1  # most patches are background: without this the encoder learns mostly "nothing here"
TAG_POSITIVE_WEIGHT = 4.0  # a scene has few of its possible tags
# The tag loss is one mean over 32 tags beside six summed cross-entropies; weighted up so that the mean
# token holds the scene's objects (at weight 1, with benchmark format 1's 48 tags, a linear probe found 72%
# of the objects present in it).
TAG_LOSS_WEIGHT = 10.0


def scene_tags(scene: synthetic.Scene) -> np.ndarray:
    """Image-level multi-hot tags: which coloured shapes, and which word.

    Taught to the encoder's mean token (with the shape count), so that what a pooling connector sees at
    first, the average over patches, already holds the scene's contents bound together. The tags say
    nothing about where a shape is: where things are is taught per patch only (the ``place`` map), so a
    connector has to keep the patches apart to answer the locality tasks (benchmark format 3; format 2's
    tags also named each shape's grid cell, and the mean token alone then read the spatial relation,
    docs/data.md).
    """
    colours, shapes = list(synthetic.COLOURS), synthetic.SHAPES
    n_obj = len(colours) * len(shapes)
    tags = np.zeros(n_obj + len(synthetic.WORDS), dtype=np.float32)
    for shape in scene.shapes:
        tags[colours.index(shape.colour) * len(shapes) + shapes.index(shape.kind)] = 1
    tags[n_obj + synthetic.WORDS.index(scene.word)] = 1
    return tags


def patch_targets(maps: dict[str, np.ndarray], patch: int) -> dict[str, np.ndarray]:
    """Per-patch classes: the most frequent non-background label covering at least a quarter of the patch."""
    out = {}
    for name, m in maps.items():
        h, w = m.shape[0] // patch, m.shape[1] // patch
        blocks = (
            m[: h * patch, : w * patch].reshape(h, patch, w, patch).transpose(0, 2, 1, 3).reshape(h, w, -1)
        )
        num = int(m.max()) + 1
        counts = np.stack([(blocks == c).sum(-1) for c in range(1, max(num, 2))], -1)  # [h, w, C-1]
        best = counts.argmax(-1) + 1
        min_pixels = 1 if name == 'centre' else patch * patch // 4
        out[name] = np.where(counts.max(-1) >= min_pixels, best, 0).astype(np.int64)
    return out


def stage_settings(cfg: Any) -> dict | None:
    """The config's ``encoder_pretraining`` settings, defaults and the shared ``data_root`` / ``image_size``
    filled in; ``None`` when the config has no such stage."""
    shared = {
        'data_root': cfg.get('data_root') or default_data_root(),
        'image_size': cfg.get('image_size') or synthetic.BASE_SIZE,
    }
    return stages.stage_settings(cfg, CONFIG_KEY, DEFAULTS, shared)


def checkpoint_path(encoder_cfg: dict, settings: dict) -> Path:
    """Where the stage writes (and later finds) its result: keyed by the encoder's config and the settings."""
    key_settings = {
        'encoder': {k: v for k, v in encoder_cfg.items() if k != 'checkpoint'},
        **{k: v for k, v in settings.items() if k != 'data_root'},
        'targets': [*synthetic.LABEL_MAPS, *GLOBAL_HEADS],
        'benchmark_format': synthetic.FORMAT_VERSION,
        'loss_weights': (BACKGROUND_WEIGHT, TAG_POSITIVE_WEIGHT, TAG_LOSS_WEIGHT),
    }
    return Path(settings['data_root']) / 'encoders' / f'{stages.cache_key(key_settings)}.pth'


def ensure_pretrained_encoder(cfg: Any) -> Path | None:
    """Runs the config's encoder pretraining stage unless its result exists, and points
    ``model.vision_encoder.checkpoint`` at the result. ``None`` (and nothing done) without the stage."""
    settings = stage_settings(cfg)
    if settings is None:
        return None
    encoder_cfg = stages.part_config(cfg, CONFIG_KEY)
    path = checkpoint_path(encoder_cfg, settings)
    stages.build_once(path, lambda p: pretrain_encoder(encoder_cfg, settings, p))
    cfg.model.vision_encoder.checkpoint = str(path)
    return path


def pretrain_encoder(encoder_cfg: dict, settings: dict, path: Path) -> dict[str, float]:
    """Builds the encoder from its config, pretrains it, and writes its weights to ``path`` (atomically)
    with ``path.json`` beside; returns the held-out accuracy per target."""
    set_random_seed(settings['seed'])
    encoder = VISION_ENCODERS.build(dict(encoder_cfg, checkpoint=None))
    metrics = _pretrain(encoder, settings)
    tmp = path.with_suffix(f'.tmp-{os.getpid()}')
    torch.save(encoder.model.state_dict(), tmp)
    publish_file(str(tmp), str(path))
    record = {'encoder': encoder_cfg, **settings, 'held_out_accuracy': metrics}
    path.with_suffix('.json').write_text(json.dumps(record, indent=2, default=str))
    print_log(f'encoder pretraining: wrote {path}', logger='current')
    return metrics


def _scene_bank(n: int, image_size: int, patch: int, seed_offset: int) -> dict[str, Tensor]:
    images, targets = [], {name: [] for name in [*synthetic.LABEL_MAPS, 'count', 'tags']}
    stream = synthetic.sample_stream('pretrain', seed_offset)
    for _ in range(n):
        _, _, scene, _, _ = next(stream)
        image, maps = synthetic.render(scene, image_size)
        images.append(np.asarray(image))
        for name, t in patch_targets(maps, patch).items():
            targets[name].append(t)
        targets['count'].append(len(scene.shapes) - 1)
        targets['tags'].append(scene_tags(scene))
    bank = {name: torch.as_tensor(np.stack(v)) for name, v in targets.items()}
    bank['images'] = torch.as_tensor(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return bank


def _predictions(encoder: nn.Module, heads: nn.ModuleDict, batch: dict[str, Tensor]) -> dict[str, tuple]:
    """{target: (logits, labels)}; patch targets flattened over the grid."""
    tokens = encoder(normalize_uint8(batch['images'])).tokens
    mean = tokens.mean(1)
    return {
        name: (
            head(mean if name in GLOBAL_HEADS else tokens),
            batch[name] if name in GLOBAL_HEADS else batch[name].flatten(1),
        )
        for name, head in heads.items()
    }


def _loss(name: str, logits: Tensor, labels: Tensor) -> Tensor:
    if name == 'tags':
        pos_weight = logits.new_full((logits.shape[-1],), TAG_POSITIVE_WEIGHT)
        return TAG_LOSS_WEIGHT * F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
    weight = None
    if name not in GLOBAL_HEADS:
        weight = logits.new_ones(logits.shape[-1])
        weight[0] = BACKGROUND_WEIGHT
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), weight=weight)


def _accuracy(name: str, logits: Tensor, labels: Tensor) -> float:
    """% correct, where it is hard: on foreground patches (label > 0), per image, or per tag (the mean
    of the accuracies on present and on absent tags)."""
    if name == 'tags':
        hit = (logits > 0) == labels.bool()
        present = labels.bool()
        return round(50.0 * (hit[present].float().mean() + hit[~present].float().mean()).item(), 1)
    hit = logits.argmax(-1) == labels
    if name not in GLOBAL_HEADS:
        hit = hit[labels > 0]
    return round(100.0 * hit.float().mean().item(), 1)


def _heads(encoder: nn.Module, num_tags: int) -> nn.ModuleDict:
    heads = nn.ModuleDict({name: nn.Linear(encoder.out_dim, n) for name, n in synthetic.LABEL_MAPS.items()})
    heads['count'] = nn.Linear(encoder.out_dim, len(synthetic.NUMBERS))
    heads['tags'] = nn.Linear(encoder.out_dim, num_tags)
    return heads


def _pretrain(encoder: nn.Module, settings: dict) -> dict[str, float]:
    image_size, iters, batch_size, bank_size, seed = (
        settings[k] for k in ('image_size', 'iters', 'batch_size', 'bank_size', 'seed')
    )
    patch = image_size // encoder.grid_size(image_size)[0]
    print_log(
        f'pretraining the vision encoder on {bank_size} synthetic scenes for {iters} iterations '
        '(once; cached afterwards)',
        logger='current',
    )
    bank = _scene_bank(bank_size, image_size, patch, seed)
    held_out = _scene_bank(512, image_size, patch, seed + 1)
    heads = _heads(encoder, held_out['tags'].shape[1])
    optim = torch.optim.AdamW(
        [*encoder.parameters(), *heads.parameters()], lr=settings['lr'], weight_decay=0.05
    )
    sched = stages.warmup_cosine(optim, iters)
    gen = torch.Generator().manual_seed(seed)
    encoder.train()
    with tqdm(range(iters), desc='encoder pretraining') as bar:
        for it in bar:
            idx = torch.randint(0, bank_size, (batch_size,), generator=gen)
            with autocast('cpu', settings['precision']):
                preds = _predictions(encoder, heads, {k: v[idx] for k, v in bank.items()})
            loss = sum(_loss(name, logits.float(), labels) for name, (logits, labels) in preds.items())
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            if it % 20 == 0:
                bar.set_postfix(loss=f'{loss.item():.3f}')
    encoder.eval()
    with torch.no_grad():
        preds = _predictions(encoder, heads, held_out)
    acc = {name: _accuracy(name, *pair) for name, pair in preds.items()}
    print_log(f'encoder pretraining: held-out accuracy per target (%): {acc}', logger='current')
    return acc
