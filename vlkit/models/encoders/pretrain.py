"""Cached dense pretraining of a small vision encoder on the synthetic images.

A frozen *random* encoder gives a connector nothing to work with, so the default tiny encoder is taught to
see first, as BLIP-3 assumes a pretrained SigLIP: every patch token learns the colour, shape and word
under it, whether a shape's centre lies in it, which coloured shape and which shape in which grid column
it shows; the mean token learns the number of shapes and the image's tags (which coloured shapes, which
shape in which column, which word: :func:`vlkit.data.synthetic.scene_tags`). The
targets come from the generator's ground truth. The result is cached under ``{data_root}/encoders/``,
keyed by the encoder's architecture and these settings, and reused on every later build.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock
from mmengine.logging import print_log
from torch import Tensor, nn
from tqdm import tqdm

from ...data import synthetic
from ...data.prepare import default_data_root
from ...data.transforms import normalize_uint8
from ...engine.checkpoint import publish_file


def load_or_pretrain(
    encoder: nn.Module,
    recipe: dict,
    *,
    data_root: str | None = None,
    image_size: int = synthetic.BASE_SIZE,
    iters: int = 800,
    batch_size: int = 64,
    lr: float = 1e-3,
    bank_size: int = 16_384,
    seed: int = 0,
) -> Path:
    """Loads the cached pretrained weights into ``encoder.model``, training and caching them if missing."""
    settings = dict(
        recipe=recipe,
        image_size=image_size,
        iters=iters,
        batch_size=batch_size,
        lr=lr,
        bank_size=bank_size,
        seed=seed,
        targets=[*synthetic.LABEL_MAPS, *GLOBAL_HEADS],
        loss_weights=(BACKGROUND_WEIGHT, TAG_POSITIVE_WEIGHT, TAG_LOSS_WEIGHT),
    )
    key = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = Path(data_root or default_data_root()) / 'encoders' / f'{key}.pth'
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + '.lock'):
        if not path.exists():
            metrics = _pretrain(encoder, image_size, iters, batch_size, lr, bank_size, seed)
            tmp = path.with_suffix(f'.tmp-{os.getpid()}')
            torch.save(encoder.model.state_dict(), tmp)
            publish_file(str(tmp), str(path))
            path.with_suffix('.json').write_text(
                json.dumps(settings | {'held_out_accuracy': metrics}, indent=2)
            )
    encoder.model.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))
    return path


def _scene_bank(n: int, image_size: int, patch: int, seed_offset: int) -> dict[str, Tensor]:
    images, targets = [], {name: [] for name in [*synthetic.LABEL_MAPS, 'count', 'tags']}
    stream = synthetic.sample_stream('pretrain', seed_offset)
    for _ in range(n):
        _, _, scene, _, _ = next(stream)
        image, maps = synthetic.render(scene, image_size)
        images.append(np.asarray(image))
        for name, t in synthetic.patch_targets(maps, patch).items():
            targets[name].append(t)
        targets['count'].append(len(scene.shapes) - 1)
        targets['tags'].append(synthetic.scene_tags(scene))
    bank = {name: torch.as_tensor(np.stack(v)) for name, v in targets.items()}
    bank['images'] = torch.as_tensor(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return bank


GLOBAL_HEADS = ('count', 'tags')  # read from the mean token; the others from every patch token


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


BACKGROUND_WEIGHT = 0.1  # most patches are background: without this the encoder learns mostly "nothing here"
TAG_POSITIVE_WEIGHT = 4.0  # a scene has few of its possible tags
# The tag loss is one mean over 48 tags beside six summed cross-entropies; weighted up so that the mean
# token holds the scene's objects (at weight 1 a linear probe found 72% of the objects present in it).
TAG_LOSS_WEIGHT = 10.0


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


def _pretrain(encoder, image_size, iters, batch_size, lr, bank_size, seed) -> dict[str, float]:
    patch = image_size // encoder.grid_size(image_size)[0]
    print_log(
        f'pretraining the vision encoder on {bank_size} synthetic scenes for {iters} iterations '
        '(once; cached afterwards)',
        logger='current',
    )
    bank = _scene_bank(bank_size, image_size, patch, seed)
    held_out = _scene_bank(512, image_size, patch, seed + 1)
    heads = nn.ModuleDict({name: nn.Linear(encoder.out_dim, n) for name, n in synthetic.LABEL_MAPS.items()})
    heads['count'] = nn.Linear(encoder.out_dim, len(synthetic.NUMBERS))
    heads['tags'] = nn.Linear(encoder.out_dim, held_out['tags'].shape[1])
    params = [*encoder.parameters(), *heads.parameters()]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warmup = max(1, iters // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, iters) / iters))
    )
    gen = torch.Generator().manual_seed(seed)
    encoder.train()
    with tqdm(range(iters), desc='encoder pretraining') as bar:
        for it in bar:
            idx = torch.randint(0, bank_size, (batch_size,), generator=gen)
            preds = _predictions(encoder, heads, {k: v[idx] for k, v in bank.items()})
            loss = sum(_loss(name, *pair) for name, pair in preds.items())
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
